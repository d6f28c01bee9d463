import { MAX_NAME_LENGTH } from '../core/peer-names.js';

/** The label value that stands for every value past a {@link LabelCap}'s limit. */
export const OTHER = '__other__';

/**
 * Remembers what was made for each distinct label key, up to `limit` keys. Past the limit a new
 * key gets what is made once per `overflowKey` (built from labels hermod controls, so bounded)
 * with `admitted = false`, i.e. with the peer-given labels replaced by {@link OTHER}: a peer
 * sending endless method names cannot grow the series without bound, nor (with `fits`) long ones.
 */
/** Longest peer-given label value a series is made for: the bound traces cut names at too. */
export const MAX_LABEL_LENGTH = MAX_NAME_LENGTH;

/** True when every value fits {@link MAX_LABEL_LENGTH} (undefined counts as empty). */
export function labelsFit(...values: Array<string | undefined>): boolean {
  for (const v of values) if (v !== undefined && v.length > MAX_LABEL_LENGTH) return false;
  return true;
}

export class LabelCap<T> {
  private readonly kept = new Map<string, T>();
  private readonly overflow = new Map<string, T>();

  constructor(private readonly limit: number) {}

  /** `fits`: false when a peer-given label is too long to keep (see {@link labelsFit}): counted under OTHER. */
  get(key: string, overflowKey: string, make: (admitted: boolean) => T, fits = true): T {
    const found = fits ? this.kept.get(key) : undefined;
    if (found !== undefined) return found;
    if (fits && this.kept.size < this.limit) {
      const made = make(true);
      this.kept.set(key, made);
      return made;
    }
    let other = this.overflow.get(overflowKey);
    if (other === undefined) {
      other = make(false);
      this.overflow.set(overflowKey, other);
    }
    return other;
  }

  /** Forgets `key`: its place goes to the next new key. */
  release(key: string): void {
    this.kept.delete(key);
  }
}
