/** The label value that stands for every value past a {@link LabelCap}'s limit. */
export const OTHER = '__other__';

/**
 * Remembers what was made for each distinct label key, up to `limit` keys. Past the limit a new
 * key gets what is made once per `overflowKey` (built from labels hermod controls, so bounded)
 * with `admitted = false`, i.e. with the peer-given labels replaced by {@link OTHER}: a peer
 * sending endless method names cannot grow the series without bound.
 */
export class LabelCap<T> {
  private readonly kept = new Map<string, T>();
  private readonly overflow = new Map<string, T>();

  constructor(private readonly limit: number) {}

  get(key: string, overflowKey: string, make: (admitted: boolean) => T): T {
    const found = this.kept.get(key);
    if (found !== undefined) return found;
    if (this.kept.size < this.limit) {
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
}
