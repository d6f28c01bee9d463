import type { Registry } from 'prom-client';

/**
 * Metric families that count in plain fields and hand prom-client their values only when
 * scraped. prom-client's own Counter and Histogram validate and hash the label object on every
 * `inc()`/`observe()`; on hermod's per-call path that was most of the cost of metrics (about
 * half the throughput of an in-memory call), so each series here is a cell found once and kept
 * by the caller. The registry (text format, cluster aggregation) is still prom-client's: a
 * family is a metric to it, with the same `get()` shape as prom-client's own.
 */

type Labels = Record<string, string>;
type Value = { labels: Record<string, string | number>; value: number; metricName?: string };

/** One counter or gauge series. */
export class Cell {
  value = 0;
}

/** One histogram series: counts per bucket (not cumulative), sum and count. */
export class HistogramCell {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length).fill(0);
  }
  /** Adds `other`'s observations (same bounds). */
  add(other: HistogramCell): void {
    this.sum += other.sum;
    this.count += other.count;
    for (let i = 0; i < this.counts.length; i++) this.counts[i]! += other.counts[i] ?? 0;
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) {
      if (v <= b[i]!) {
        this.counts[i]!++;
        return;
      }
    }
  }
}

abstract class Family<C> {
  private readonly series = new Map<string, { labels: Labels; cell: C }>();
  /** What {@link Registry} calls `aggregator`: workers' values are summed. */
  readonly aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
  ) {}

  protected abstract make(): C;
  protected abstract values(labels: Labels, cell: C): Value[];

  /** The cell of `labels`, made on first use; `key` must identify the labels. */
  cell(key: string, labels: Labels): C {
    let s = this.series.get(key);
    if (!s) {
      s = { labels, cell: this.make() };
      this.series.set(key, s);
    }
    return s.cell;
  }

  /** The cell of `labels`, keyed by their values in order (for rare events). */
  at(labels: Labels): C {
    return this.cell(Object.values(labels).join('\0'), labels);
  }

  /** Removes the series of `key` (it is no longer scraped); returns its cell. */
  drop(key: string): C | undefined {
    const s = this.series.get(key);
    this.series.delete(key);
    return s?.cell;
  }

  /** Removes the series {@link at} made for `labels`; returns its cell. */
  dropAt(labels: Labels): C | undefined {
    return this.drop(Object.values(labels).join('\0'));
  }

  /** prom-client's metric interface. */
  get(): { name: string; help: string; type: string; aggregator: string; values: Value[] } {
    const values: Value[] = [];
    for (const { labels, cell } of this.series.values()) values.push(...this.values(labels, cell));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Registers this family in `registry`. */
  register(registry: Registry): this {
    registry.registerMetric(this as never);
    return this;
  }
}

/** A counter or gauge family. */
export class ValueFamily extends Family<Cell> {
  protected make(): Cell {
    return new Cell();
  }
  protected values(labels: Labels, cell: Cell): Value[] {
    return [{ labels, value: cell.value }];
  }
}

/** A histogram family (`_bucket` with cumulative `le`, `_sum`, `_count`). */
export class HistogramFamily extends Family<HistogramCell> {
  constructor(
    name: string,
    help: string,
    private readonly bounds: readonly number[],
  ) {
    super(name, help, 'histogram');
  }
  protected make(): HistogramCell {
    return new HistogramCell(this.bounds);
  }
  protected values(labels: Labels, cell: HistogramCell): Value[] {
    const out: Value[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += cell.counts[i]!;
      out.push({ labels: { ...labels, le: this.bounds[i]! }, value: cumulative, metricName: `${this.name}_bucket` });
    }
    out.push({ labels: { ...labels, le: '+Inf' }, value: cell.count, metricName: `${this.name}_bucket` });
    out.push({ labels, value: cell.sum, metricName: `${this.name}_sum` });
    out.push({ labels, value: cell.count, metricName: `${this.name}_count` });
    return out;
  }
}
