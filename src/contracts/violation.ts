import { InvalidArgument } from '../core/errors.js';
import type { Failure } from '../core/failure.js';
import { peerText } from '../core/plain.js';

/** One way a value breaks its contract: a JSON Pointer into it and what is wrong there. */
export interface Violation {
  /** JSON Pointer from the arguments (or result) object: `/items/2/name`; `` for the object itself. */
  path: string;
  /** What is wrong there, in Ajv's words (`must be number`). */
  message: string;
}

/** At most this many violations travel in one error: the rest are counted. */
export const MAX_VIOLATIONS = 20;

/**
 * Arguments (or a result) that break a method's contract. The violations travel in the failure's
 * `kwargs.violations`, so a hermod client rebuilds this class, and an oslo.messaging caller sees a
 * `RemoteError` whose `exc_type` is `ContractViolation` and whose message lists them.
 */
export class ContractViolation extends InvalidArgument {
  /** Where and how the value broke its contract: at most {@link MAX_VIOLATIONS}, the rest counted in the message. */
  readonly violations: Violation[];
  /**
   * What broke the contract: the caller's `arguments` (the caller's mistake: a usage error, HTTP
   * 400) or the method's `result` (the server's). Undefined when a peer did not say.
   */
  readonly of: 'arguments' | 'result' | undefined;
  /** What crosses the wire beside the message (see core/failure.ts). */
  readonly kwargs: { violations: Violation[]; of?: 'arguments' | 'result' };

  /** `subject` leads the message: "arguments of add break its contract". */
  constructor(subject: string, violations: Violation[], options?: { cause?: unknown; of?: 'arguments' | 'result' }) {
    const shown = violations.slice(0, MAX_VIOLATIONS);
    const more = violations.length - shown.length;
    const list = shown.map((v) => `${v.path || '/'} ${v.message}`).join('; ');
    super(`${subject}: ${list}${more > 0 ? ` (and ${more} more)` : ''}`, options);
    this.violations = shown;
    this.of = options?.of;
    this.kwargs = { violations: shown, ...(options?.of ? { of: options.of } : {}) };
  }

  /** Rebuilds the error a server sent (registered with registerRemoteError). */
  static fromFailure(f: Failure): ContractViolation {
    const raw = f.kwargs?.violations;
    const violations = Array.isArray(raw)
      ? raw.slice(0, MAX_VIOLATIONS).map((v) => ({ path: peerText((v as Violation)?.path), message: peerText((v as Violation)?.message) }))
      : [];
    const message = peerText(f.message);
    // Servers before `of` travelled said it only in the message's first words.
    const said = f.kwargs?.of;
    const of =
      said === 'arguments' || said === 'result'
        ? said
        : /^arguments of /.test(message)
          ? 'arguments'
          : /^the result of /.test(message)
            ? 'result'
            : undefined;
    const err = new ContractViolation('', violations, of ? { of } : {});
    // The server's own text, not a re-rendering of it.
    err.message = message;
    return err;
  }
}
Object.defineProperty(ContractViolation, 'CODE', { value: 'HERMOD_ERR_CONTRACT_VIOLATION' });
