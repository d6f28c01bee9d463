// Every public type carries TSDoc: what the package exports (its two entry points) and each
// public member of an exported class or interface. Read from the build's declarations, which
// are what an editor shows a user; a missing comment names its declaration and line.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');
const ENTRIES = [path.join(SRC, 'index.d.ts'), path.join(SRC, 'gateway', 'index.d.ts')];

const documented = (node: ts.Node) => ts.getJSDocCommentsAndTags(node).length > 0;

function isPublicMember(m: ts.ClassElement | ts.TypeElement): boolean {
  if (!m.name || ts.isPrivateIdentifier(m.name) || ts.isConstructorDeclaration(m)) return false;
  const mods = ts.canHaveModifiers(m) ? (ts.getModifiers(m) ?? []) : [];
  return !mods.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword || x.kind === ts.SyntaxKind.ProtectedKeyword);
}

/** The undocumented exports and public members reachable from the entry points, as `name (file:line)`. */
function undocumented(): { missing: string[]; exports: number } {
  const program = ts.createProgram(ENTRIES, { noEmit: true, skipLibCheck: true, types: [] });
  const checker = program.getTypeChecker();
  const missing: string[] = [];
  const seen = new Set<ts.Declaration>();
  let exports = 0;
  const where = (n: ts.Node) => {
    const sf = n.getSourceFile();
    return `${path.relative(SRC, sf.fileName)}:${sf.getLineAndCharacterOfPosition(n.getStart()).line + 1}`;
  };
  for (const entry of ENTRIES) {
    const sf = program.getSourceFile(entry);
    assert.ok(sf, `${entry} is built`);
    const mod = checker.getSymbolAtLocation(sf!);
    for (let sym of checker.getExportsOfModule(mod!)) {
      exports++;
      if (sym.flags & ts.SymbolFlags.Alias) sym = checker.getAliasedSymbol(sym);
      for (const decl of sym.declarations ?? []) {
        if (seen.has(decl) || decl.getSourceFile().fileName.includes('node_modules')) continue;
        seen.add(decl);
        if (!documented(decl)) missing.push(`${sym.name} (${where(decl)})`);
        if (!ts.isClassDeclaration(decl) && !ts.isInterfaceDeclaration(decl)) continue;
        const members = decl.members as ts.NodeArray<ts.ClassElement | ts.TypeElement>;
        for (const m of members) {
          if (!isPublicMember(m) || documented(m)) continue;
          const name = m.name!.getText();
          // An overload set needs its comment once.
          if (members.some((o) => o !== m && o.name?.getText() === name && documented(o))) continue;
          missing.push(`${sym.name}.${name} (${where(m)})`);
        }
      }
    }
  }
  return { missing, exports };
}

test('every export and public member of the package carries TSDoc', () => {
  const { missing, exports } = undocumented();
  assert.ok(exports > 100, `exports read (${exports})`);
  assert.equal(missing, []);
});

test.run();
