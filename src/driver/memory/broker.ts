/**
 * An in-process broker with RabbitMQ's routing model cut down to what oslo uses: exchanges
 * with exact-match bindings, queues with competing consumers, per-consumer prefetch and
 * requeue. Messages are stored as JSON strings so that a memory transport has the same
 * serialisation limits as a real one.
 */

export interface MemoryDelivery {
  readonly body: string;
  /** Frees the consumer's prefetch slot. */
  done(): void;
  /** Puts the message back in its queue, ahead of every message published after it (as RabbitMQ keeps a requeued message's place). */
  requeue(): void;
}

export interface MemoryConsumer {
  readonly prefetch: number;
  readonly deliver: (delivery: MemoryDelivery) => void;
  inFlight: number;
}

/** A queued message and its place in its queue's publish order. */
interface Queued {
  readonly body: string;
  readonly seq: number;
}

class MemoryQueue {
  readonly messages: Queued[] = [];
  private seq = 0;
  readonly consumers: MemoryConsumer[] = [];
  private next = 0;
  private scheduled = false;

  constructor(
    readonly name: string,
    private readonly wake: (c: MemoryConsumer) => void,
  ) {}

  push(body: string): void {
    this.messages.push({ body, seq: this.seq++ });
    this.schedule();
  }

  /** Puts `m` back at its place: requeued in any order, messages leave again in their publish order. */
  private putBack(m: Queued): void {
    let i = 0;
    while (i < this.messages.length && this.messages[i]!.seq < m.seq) i++;
    this.messages.splice(i, 0, m);
    this.schedule();
  }

  // Delivery is always asynchronous so a publisher never runs its consumer's code re-entrantly.
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (this.messages.length > 0) {
      const consumer = this.pickConsumer();
      if (!consumer) return;
      const m = this.messages.shift()!;
      consumer.inFlight++;
      let finished = false;
      const release = () => {
        if (finished) return false;
        finished = true;
        consumer.inFlight--;
        this.wake(consumer);
        return true;
      };
      consumer.deliver({
        body: m.body,
        done: () => {
          release();
        },
        requeue: () => {
          if (release()) this.putBack(m);
        },
      });
    }
  }

  private pickConsumer(): MemoryConsumer | undefined {
    const n = this.consumers.length;
    for (let i = 0; i < n; i++) {
      const c = this.consumers[(this.next + i) % n]!;
      if (c.inFlight < c.prefetch) {
        this.next = (this.next + i + 1) % n;
        return c;
      }
    }
    return undefined;
  }
}

/** One named in-process broker; every `memory://<name>` transport in the process shares it. */
export class MemoryBroker {
  private readonly queues = new Map<string, MemoryQueue>();
  /** exchange → routing key → queue names */
  private readonly bindings = new Map<string, Map<string, Set<string>>>();
  /**
   * queue → where it is bound (exchange, key), so that deleting a queue touches only its own
   * bindings: a scan of all of them per queue made stopping a run of 12,000 services take 20 s.
   */
  private readonly boundAt = new Map<string, Array<[string, string]>>();

  constructor(readonly name: string) {}

  /** consumer → the queues it takes from, so a freed prefetch slot wakes all of them */
  private readonly attached = new Map<MemoryConsumer, Set<MemoryQueue>>();

  declareQueue(name: string): void {
    if (!this.queues.has(name)) {
      this.queues.set(
        name,
        new MemoryQueue(name, (c) => {
          for (const q of this.attached.get(c) ?? []) q.schedule();
        }),
      );
    }
  }

  deleteQueue(name: string): void {
    this.queues.delete(name);
    for (const [exchange, key] of this.boundAt.get(name) ?? []) {
      const keys = this.bindings.get(exchange);
      const set = keys?.get(key);
      if (!keys || !set) continue;
      set.delete(name);
      // Gone with their last queue: a process that starts and stops servers all day keeps no trace.
      if (set.size === 0) keys.delete(key);
      if (keys.size === 0) this.bindings.delete(exchange);
    }
    this.boundAt.delete(name);
  }

  bind(queue: string, exchange: string, key: string): void {
    let keys = this.bindings.get(exchange);
    if (!keys) {
      keys = new Map();
      this.bindings.set(exchange, keys);
    }
    let set = keys.get(key);
    if (!set) {
      set = new Set();
      keys.set(key, set);
    }
    if (set.has(queue)) return;
    set.add(queue);
    let at = this.boundAt.get(queue);
    if (!at) {
      at = [];
      this.boundAt.set(queue, at);
    }
    at.push([exchange, key]);
  }

  /** Routes `body` to every queue bound with `key`; exchange `''` addresses a queue by name. Returns how many queues got it. */
  publish(exchange: string, key: string, body: string): number {
    if (exchange === '') {
      const q = this.queues.get(key);
      q?.push(body);
      return q ? 1 : 0;
    }
    const names = this.bindings.get(exchange)?.get(key);
    if (!names) return 0;
    let n = 0;
    for (const name of names) {
      const q = this.queues.get(name);
      if (q) {
        q.push(body);
        n++;
      }
    }
    return n;
  }

  consume(queue: string, consumer: MemoryConsumer): () => void {
    this.declareQueue(queue);
    const q = this.queues.get(queue)!;
    q.consumers.push(consumer);
    let queues = this.attached.get(consumer);
    if (!queues) {
      queues = new Set();
      this.attached.set(consumer, queues);
    }
    queues.add(q);
    q.schedule();
    return () => {
      const i = q.consumers.indexOf(consumer);
      if (i >= 0) q.consumers.splice(i, 1);
      const set = this.attached.get(consumer);
      set?.delete(q);
      if (set && set.size === 0) this.attached.delete(consumer);
    };
  }
}

const brokers = new Map<string, MemoryBroker>();

/** The process-wide broker called `name`, created on first use. */
export function memoryBroker(name: string): MemoryBroker {
  let b = brokers.get(name);
  if (!b) {
    b = new MemoryBroker(name);
    brokers.set(name, b);
  }
  return b;
}
