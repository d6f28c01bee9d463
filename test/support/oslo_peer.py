#!/usr/bin/python3
"""A real oslo.messaging peer for hermod's interop tests.

Runs either an oslo RPC server or an oslo RPC client on any transport URL
(rabbit:// or amqp://), driven over stdio with one JSON object per line so one
Python process (and one oslo import, ~1 s) serves a whole test suite.

  oslo_peer.py server --url URL --topic T --server NAME [--exchange E]
      prints {"event": "ready"} once consuming, then one {"event": ...} line per
      cast it records; stops on stdin EOF or SIGTERM and prints {"event": "stopped"}.

  oslo_peer.py client --url URL
      reads {"id", "op": "call"|"cast", "topic", "method", "args", "ctx",
      "server", "fanout", "namespace", "version", "exchange", "timeout",
      "call_monitor_timeout"} lines and answers {"id", "ok": true, "result"} or
      {"id", "ok": false, "error": {"class", "module", "message", "exc_type", "value"}}.

  oslo_peer.py notify --url URL / listen ... (see main) for notifications.
"""
import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from oslo_config import cfg
import oslo_messaging as messaging

out_lock = threading.Lock()


def emit(obj):
    with out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class PeerError(Exception):
    """A typed error of the peer's own module, to test allowed_remote_exmods mapping."""


class Endpoint(object):
    def __init__(self, name):
        self.name = name

    def whoami(self, ctxt):
        return self.name

    def echo(self, ctxt, value=None):
        return value

    def add(self, ctxt, a, b):
        return a + b

    def ctx(self, ctxt):
        return ctxt

    def bump(self, ctxt, seq=None):
        emit({"event": "bump", "seq": seq, "server": self.name, "ctx": ctxt})

    def sleep(self, ctxt, seconds=1):
        time.sleep(seconds)
        return {"slept": seconds, "server": self.name}

    def fail(self, ctxt, message="boom"):
        raise ValueError(message)

    def fail_typed(self, ctxt, message="boom"):
        raise PeerError(message)


class Versioned(object):
    target = messaging.Target(namespace="math", version="1.3")

    def mul(self, ctxt, a, b):
        return a * b


class NotifyEndpoint(object):
    def __init__(self, name):
        self.name = name

    def _record(self, priority, ctxt, publisher_id, event_type, payload, metadata):
        emit({"event": "notification", "listener": self.name, "priority": priority,
              "publisher_id": publisher_id, "event_type": event_type,
              "payload": payload, "ctx": ctxt, "metadata": metadata})
        return messaging.NotificationResult.HANDLED

    def audit(self, *a):
        return self._record("audit", *a)

    def debug(self, *a):
        return self._record("debug", *a)

    def info(self, *a):
        return self._record("info", *a)

    def warn(self, *a):
        return self._record("warn", *a)

    def error(self, *a):
        return self._record("error", *a)

    def critical(self, *a):
        return self._record("critical", *a)

    def sample(self, *a):
        return self._record("sample", *a)


def make_conf(args):
    # oslo 14 registers its metrics options on the global CONF only, so use that one.
    conf = cfg.CONF
    # A config file carries [oslo_messaging_rabbit] options: the driver registers them later.
    conf(["--config-file", args.config_file] if args.config_file else [], project="hermod-interop")
    if args.exchange:
        conf.set_override("control_exchange", args.exchange)
    return conf


def wait_for_exit():
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def read_stdin():
        for _ in sys.stdin:
            pass
        done.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    done.wait()


def run_server(args):
    conf = make_conf(args)
    transport = messaging.get_rpc_transport(conf, url=args.url)
    target = messaging.Target(topic=args.topic, server=args.server)
    server = messaging.get_rpc_server(transport, target, [Endpoint(args.server), Versioned()],
                                      executor="threading")
    server.start()
    emit({"event": "ready", "pid": os.getpid(), "oslo": os.path.dirname(os.path.dirname(messaging.__file__))})
    wait_for_exit()
    server.stop()
    server.wait()
    transport.cleanup()
    emit({"event": "stopped"})
    os._exit(0)


def error_info(e):
    return {"class": type(e).__name__, "module": type(e).__module__, "message": str(e),
            "exc_type": getattr(e, "exc_type", None), "value": getattr(e, "value", None)}


def run_client(args):
    conf = make_conf(args)
    if args.allowed_exmods:
        conf.set_override("allowed_rpc_exception_modules", args.allowed_exmods.split(","))
    transport = messaging.get_rpc_transport(conf, url=args.url)
    emit({"event": "ready", "pid": os.getpid(), "oslo": os.path.dirname(os.path.dirname(messaging.__file__))})

    def handle(req):
        target = messaging.Target(topic=req["topic"], exchange=req.get("exchange"))
        client = messaging.get_rpc_client(transport, target)
        prep = {}
        for key in ("server", "fanout", "namespace", "version", "timeout", "call_monitor_timeout"):
            if req.get(key) is not None:
                prep[key] = req[key]
        if prep:
            client = client.prepare(**prep)
        ctxt = req.get("ctx") or {}
        try:
            if req["op"] == "call":
                result = client.call(ctxt, req["method"], **(req.get("args") or {}))
            else:
                client.cast(ctxt, req["method"], **(req.get("args") or {}))
                result = None
            emit({"id": req["id"], "ok": True, "result": result})
        except Exception as e:  # every failure goes back to the test, typed
            emit({"id": req["id"], "ok": False, "error": error_info(e)})

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        # Calls run concurrently so a test can overlap them (e.g. two servers splitting calls).
        threading.Thread(target=handle, args=(req,), daemon=True).start()
    transport.cleanup()
    emit({"event": "stopped"})
    # oslo 14's metrics thread keeps the process alive ~10 s after cleanup.
    os._exit(0)


def run_notify(args):
    conf = make_conf(args)
    transport = messaging.get_notification_transport(conf, url=args.url)
    emit({"event": "ready", "pid": os.getpid(), "oslo": os.path.dirname(os.path.dirname(messaging.__file__))})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        notifier = messaging.Notifier(transport, publisher_id=req["publisher_id"],
                                      driver=req.get("driver", "messagingv2"),
                                      topics=req.get("topics") or ["notifications"])
        try:
            getattr(notifier, req["priority"])(req.get("ctx") or {}, req["event_type"], req.get("payload"))
            emit({"id": req["id"], "ok": True})
        except Exception as e:
            emit({"id": req["id"], "ok": False, "error": error_info(e)})
    transport.cleanup()
    emit({"event": "stopped"})
    os._exit(0)


def run_listen(args):
    conf = make_conf(args)
    transport = messaging.get_notification_transport(conf, url=args.url)
    targets = [messaging.Target(topic=t) for t in args.topics.split(",")]
    endpoints = [NotifyEndpoint(args.name)]
    if args.filter_event_type:
        endpoints[0].filter_rule = messaging.NotificationFilter(event_type=args.filter_event_type)
    listener = messaging.get_notification_listener(transport, targets, endpoints,
                                                   executor="threading", pool=args.pool)
    listener.start()
    emit({"event": "ready", "pid": os.getpid(), "oslo": os.path.dirname(os.path.dirname(messaging.__file__))})
    wait_for_exit()
    listener.stop()
    listener.wait()
    transport.cleanup()
    emit({"event": "stopped"})
    os._exit(0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client", "notify", "listen"])
    p.add_argument("--url", required=True)
    p.add_argument("--topic")
    p.add_argument("--topics", default="notifications")
    p.add_argument("--server")
    p.add_argument("--name", default="py")
    p.add_argument("--pool")
    p.add_argument("--filter-event-type")
    p.add_argument("--exchange")
    p.add_argument("--allowed-exmods")
    p.add_argument("--config-file")
    args = p.parse_args()
    logging.basicConfig(level=os.environ.get("OSLO_PEER_LOG", "WARNING"), stream=sys.stderr)
    {"server": run_server, "client": run_client, "notify": run_notify, "listen": run_listen}[args.mode](args)


if __name__ == "__main__":
    main()
