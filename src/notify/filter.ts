import { InvalidArgument } from '../core/errors.js';
import type { Context } from '../core/serializer.js';
import { assertOptions } from '../core/suggest.js';
import type { NotificationMetadata } from './message.js';
import { pythonRegexSource } from './python-regex.js';

type Regexes = Record<string, string | RegExp>;

const RULES = { publisherId: true, eventType: true, context: true, metadata: true, payload: true } as const;

/**
 * oslo's NotificationFilter: regular expressions matched from the start of the publisher id,
 * event type, and named fields of the context, metadata and payload. A field that is missing or
 * not a string fails the match. A rule given as a string is a Python pattern, read as Python's
 * `re` reads it (`\A`, `\Z`, `$`, Unicode `\w`, `(?P<name>…)`); a RegExp is JavaScript's.
 */
export class NotificationFilter {
  private readonly publisherId: RegExp | undefined;
  private readonly eventType: RegExp | undefined;
  private readonly ctx: Record<string, RegExp>;
  private readonly metadata: Record<string, RegExp>;
  private readonly payload: Record<string, RegExp>;

  constructor(rules: {
    publisherId?: string | RegExp;
    eventType?: string | RegExp;
    context?: Regexes;
    metadata?: Regexes;
    payload?: Regexes;
  }) {
    // A misspelt rule (oslo's `event_type`) would otherwise pass every notification.
    assertOptions(rules, RULES, 'NotificationFilter rules');
    this.publisherId = NotificationFilter.compile(rules.publisherId, 'publisherId');
    this.eventType = NotificationFilter.compile(rules.eventType, 'eventType');
    this.ctx = NotificationFilter.dict(rules.context, 'context');
    this.metadata = NotificationFilter.dict(rules.metadata, 'metadata');
    this.payload = NotificationFilter.dict(rules.payload, 'payload');
  }

  /**
   * A rule as a RegExp anchored at the start, as Python's re.match (the sticky flag does the
   * same). A pattern that does not compile is an InvalidArgument naming the rule (`field`) and the
   * pattern as written: the engine's own message shows it with the sticky flag added (`/(/y`).
   */
  private static compile(p: string | RegExp | undefined, field: string): RegExp | undefined {
    if (p === undefined) return undefined;
    // String() of anything else compiled to a pattern nobody wrote (`{}` to /[object Object]/).
    if (typeof p !== 'string' && !(p instanceof RegExp)) {
      throw new InvalidArgument(
        `${field}: a rule must be a string or a RegExp, got ${p === null ? 'null' : Array.isArray(p) ? 'an array' : typeof p}`,
      );
    }
    try {
      // A string is a Python pattern, as oslo's filters are written (see pythonRegexSource); a
      // RegExp is the caller's own JavaScript.
      return p instanceof RegExp ? new RegExp(p.source, `${p.flags.replace(/[gy]/g, '')}y`) : new RegExp(pythonRegexSource(p), 'uy');
    } catch (err) {
      const why = (err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '');
      throw new InvalidArgument(`${field}: bad regular expression ${JSON.stringify(String(p))}: ${why}`);
    }
  }

  private static dict(d: Regexes | undefined, field: string): Record<string, RegExp> {
    const out: Record<string, RegExp> = {};
    if (d !== undefined && (d === null || typeof d !== 'object' || Array.isArray(d) || d instanceof RegExp)) {
      throw new InvalidArgument(`${field}: rules must be an object of field names to patterns`);
    }
    for (const [k, v] of Object.entries(d ?? {})) out[k] = NotificationFilter.compile(v, `${field}.${k}`)!;
    return out;
  }

  private static single(value: unknown, re: RegExp | undefined): boolean {
    if (!re) return true;
    if (typeof value !== 'string') return false;
    re.lastIndex = 0;
    return re.test(value);
  }

  private static all(data: unknown, res: Record<string, RegExp>): boolean {
    for (const [k, re] of Object.entries(res)) {
      // A plain object's own key, as Python's `k in dict`: a list's index or an inherited name
      // (`constructor`) matched before; oslo finds no such key in a list.
      if (!data || typeof data !== 'object' || Array.isArray(data) || !Object.hasOwn(data, k)) return false;
      if (!NotificationFilter.single((data as Record<string, unknown>)[k], re)) return false;
    }
    return true;
  }

  /** Whether a notification passes. */
  match(ctx: Context, publisherId: unknown, eventType: unknown, metadata: NotificationMetadata, payload: unknown): boolean {
    return (
      NotificationFilter.single(publisherId, this.publisherId) &&
      NotificationFilter.single(eventType, this.eventType) &&
      NotificationFilter.all(ctx, this.ctx) &&
      NotificationFilter.all(metadata, this.metadata) &&
      NotificationFilter.all(payload, this.payload)
    );
  }
}
