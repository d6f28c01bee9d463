/**
 * What is wrong with a module path a person typed (`--endpoints`, a run file's `endpoints`),
 * said in their terms: Node's own text for a directory names hermod's loader as the importer,
 * and a path without its extension (as `require` would take it) is simply "not found".
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

const EXTENSIONS = ['.js', '.mjs', '.cjs', '.ts', '.mts', '.cts'];

/**
 * Why `file` cannot be imported as a module, or undefined when it is a file: it is missing
 * (naming the file it probably means: the same path with an extension, or a directory's index),
 * or a directory.
 */
export function modulePathProblem(file: string): string | undefined {
  const abs = path.resolve(file);
  let isDir = false;
  try {
    const st = statSync(abs);
    if (!st.isDirectory()) return undefined;
    isDir = true;
  } catch {
    // missing: looked for below
  }
  const base = isDir ? path.join(abs, 'index') : abs;
  const guess = EXTENSIONS.map((e) => base + e).find((f) => existsSync(f));
  const meant = guess ? `; did you mean ${guess}?` : '';
  return isDir ? `${abs} is a directory: name the module file${meant}` : `${abs} does not exist${meant}`;
}
