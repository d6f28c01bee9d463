#!/usr/bin/python3
"""oslo.messaging's own RPC client and server for hermod's benchmark (the peer row).

  oslo_bench.py server --url URL --topic T --name N    prints {"event": "ready"}, serves until killed
  oslo_bench.py client --url URL --topic T --calls N --concurrency C --payload-bytes B
      runs workloads 1-4 against the servers of topic T and prints {"result": {...}}
"""
import argparse
import json
import logging
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging as messaging


class Endpoint(object):
    def __init__(self):
        self.casts = 0
        self.lock = threading.Lock()

    def echo(self, ctxt, v=None):
        return v

    def count(self, ctxt, v=None):
        with self.lock:
            self.casts += 1

    def counted(self, ctxt):
        return self.casts

    def reset(self, ctxt):
        self.casts = 0


def transport(url):
    cfg.CONF([], project="hermod-bench")
    # One pooled connection per client thread (workload 2 runs 64): no pool-exhausted warnings.
    # The option group exists only once the rabbit driver is imported.
    from oslo_messaging._drivers import base as driver_base
    cfg.CONF.register_opts(driver_base.base_opts, group="oslo_messaging_rabbit")
    cfg.CONF.set_override("rpc_conn_pool_size", 128, group="oslo_messaging_rabbit")
    return messaging.get_rpc_transport(cfg.CONF, url=url)


def serve(args):
    t = transport(args.url)
    server = messaging.get_rpc_server(t, messaging.Target(topic=args.topic, server=args.name), [Endpoint()],
                                      executor="threading")
    server.start()
    print(json.dumps({"event": "ready"}), flush=True)
    while True:
        time.sleep(3600)


def pct(lat, p):
    s = sorted(lat)
    return s[min(len(s) - 1, max(0, int(p * len(s) + 0.999999) - 1))] * 1000 if s else 0


def run_client(args):
    t = transport(args.url)
    payload = "x" * args.payload_bytes
    client = messaging.get_rpc_client(t, messaging.Target(topic=args.topic), timeout=60)
    n = args.calls
    res = {}
    for _ in range(100):
        client.call({}, "echo", v=payload)
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        s = time.perf_counter()
        client.call({}, "echo", v=payload)
        lat.append(time.perf_counter() - s)
    res["seq_rate"] = n / (time.perf_counter() - t0)
    res["seq_p50"] = pct(lat, 0.5)
    res["seq_p99"] = pct(lat, 0.99)

    # Workload 2: oslo's client is thread-safe; one thread per call in flight.
    left = [n]
    lock = threading.Lock()

    def lane():
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            client.call({}, "echo", v=payload)

    threads = [threading.Thread(target=lane) for _ in range(args.concurrency)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    res["conc_rate"] = n / (time.perf_counter() - t0)

    # Workload 3: casts to one server (each publish waits for its confirm), then end to end.
    one = client.prepare(server="o1")
    one.call({}, "reset")
    t0 = time.perf_counter()
    for _ in range(n):
        one.cast({}, "count", v=payload)
    res["cast_rate"] = n / (time.perf_counter() - t0)
    while one.call({}, "counted") < n:
        time.sleep(0.002)
    res["cast_e2e"] = n / (time.perf_counter() - t0)

    # Workload 4: fanout to both servers.
    two = client.prepare(server="o2")
    one.call({}, "reset")
    two.call({}, "reset")
    fan = client.prepare(fanout=True)
    t0 = time.perf_counter()
    for _ in range(n):
        fan.cast({}, "count", v=payload)
    while one.call({}, "counted") + two.call({}, "counted") < 2 * n:
        time.sleep(0.002)
    res["fanout_deliveries"] = 2 * n / (time.perf_counter() - t0)
    print(json.dumps({"result": res}), flush=True)
    sys.stdout.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--url", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--name", default="o1")
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--payload-bytes", type=int, default=32)
    args = p.parse_args()
    # oslo warns about its own call-queue growth under 64 threads; the bench only wants figures.
    logging.basicConfig(level=logging.ERROR)
    serve(args) if args.mode == "server" else run_client(args)


if __name__ == "__main__":
    main()
