/**
 * JSON-RPC ids as the client wrote them. JSON.parse reads every number as a double, so an integer
 * id beyond 2^53 (an int64 counter, a snowflake id) came back rounded, `9007199254740993` as
 * `9007199254740992`, and the client could not match its answer: the specification has the
 * response carry the request's id unchanged. The body is scanned for the ids' source text only
 * when a parsed id is a number that is not a safe integer (or is 0), so ordinary requests pay nothing.
 */

/**
 * The source text of the `id` member of the request object, or of each request object of a batch
 * (indexed like the batch), where that id is a number; `undefined` elsewhere. `text` must be
 * valid JSON (it was parsed before), and its nesting bounded (it was checked before).
 */
export function idLiterals(text: string): Array<string | undefined> {
  const scan = new Scan(text);
  scan.ws();
  if (text.charCodeAt(scan.i) === 0x7b /* { */) return [scan.objectId()];
  if (text.charCodeAt(scan.i) !== 0x5b /* [ */) return [];
  const out: Array<string | undefined> = [];
  scan.i++;
  scan.ws();
  if (text.charCodeAt(scan.i) === 0x5d /* ] */) return out;
  for (;;) {
    scan.ws();
    if (text.charCodeAt(scan.i) === 0x7b) out.push(scan.objectId());
    else {
      scan.value();
      out.push(undefined);
    }
    scan.ws();
    if (text.charCodeAt(scan.i++) !== 0x2c /* , */) return out;
  }
}

/**
 * Whether a parsed id may not give the client back the number it sent: beyond 2^53 or a
 * fraction; infinite (`1e400` overflows); or 0, which is also what `-0` (written back as `0`)
 * and an underflow (`1e-400`) parse to.
 */
export function inexactId(id: unknown): boolean {
  return typeof id === 'number' && (!Number.isSafeInteger(id) || id === 0);
}

/**
 * JSON of a response object whose `id` (its last key) is written as `literal`, the request's own
 * digits. The literal comes from the request's JSON, already parsed, so it is a valid number.
 */
export function withIdLiteral(response: { id: unknown }, literal: string | undefined): string {
  if (literal === undefined || !inexactId(response.id)) return JSON.stringify(response);
  const text = JSON.stringify({ ...response, id: null });
  const tail = ',"id":null}';
  // Every response object is built with `id` last; anything else is written as parsed.
  if (!text.endsWith(tail)) return JSON.stringify(response);
  return `${text.slice(0, -tail.length)},"id":${literal}}`;
}

class Scan {
  i = 0;
  constructor(private readonly s: string) {}

  ws(): void {
    const s = this.s;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else return;
    }
  }

  /** Skips a string token starting at its opening quote. */
  string(): void {
    const s = this.s;
    this.i++;
    for (;;) {
      const c = s.charCodeAt(this.i);
      if (Number.isNaN(c)) return;
      if (c === 0x5c /* \ */) this.i += 2;
      else {
        this.i++;
        if (c === 0x22 /* " */) return;
      }
    }
  }

  /** Skips one value of any kind. */
  value(): void {
    const s = this.s;
    const c = s.charCodeAt(this.i);
    if (c === 0x22) {
      this.string();
      return;
    }
    if (c === 0x7b || c === 0x5b) {
      let depth = 0;
      for (;;) {
        const d = s.charCodeAt(this.i);
        if (Number.isNaN(d)) return;
        if (d === 0x22) {
          this.string();
          continue;
        }
        if (d === 0x7b || d === 0x5b) depth++;
        else if (d === 0x7d || d === 0x5d) depth--;
        this.i++;
        if (depth === 0) return;
      }
    }
    // A number, true, false or null: up to the next delimiter.
    for (;;) {
      const d = s.charCodeAt(this.i);
      if (Number.isNaN(d) || d === 0x2c || d === 0x7d || d === 0x5d || d === 0x20 || d === 0x09 || d === 0x0a || d === 0x0d) return;
      this.i++;
    }
  }

  /** Reads an object from its `{`; the text of its last `id` member when that is a number. */
  objectId(): string | undefined {
    const s = this.s;
    let literal: string | undefined;
    this.i++;
    this.ws();
    if (s.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return undefined;
    }
    for (;;) {
      this.ws();
      const keyStart = this.i;
      this.string();
      const key = s.slice(keyStart, this.i);
      this.ws();
      this.i++; // the colon
      this.ws();
      const valueStart = this.i;
      this.value();
      // JSON.parse keeps the last of duplicate keys; so does this. A key spelled with escapes
      // (`"\u0069d"`) is the same key to JSON.parse.
      if (key === '"id"' || (key.includes('\\') && JSON.parse(key) === 'id')) {
        const c = s.charCodeAt(valueStart);
        literal = c === 0x2d || (c >= 0x30 && c <= 0x39) ? s.slice(valueStart, this.i) : undefined;
      }
      this.ws();
      if (s.charCodeAt(this.i++) !== 0x2c) return literal;
    }
  }
}
