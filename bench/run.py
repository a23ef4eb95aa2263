#!/usr/bin/env python3
"""Side-by-side benchmark of portcullis, HAProxy and NGINX on loopback.

One shared backend (an NGINX instance answering a small body with keep-alive,
plus a TLS server with a large file for the passthrough figure), three proxies
with equivalent configuration, each terminating TLS for the same ECDSA P-256
certificate with X25519 and TLS_AES_128_GCM_SHA256 (server's choice, whatever
the client's order) and proxying with upstream keep-alive, one worker each
pinned to CPU 0; the load generators (wrk, h2load, bench/loadgen.rs) and the
backend run on CPU 1. Session resumption is off on every server (no tickets, no
session cache; portcullis `--tls-session-cache 0`), and before its handshake
rounds each server is checked to refuse resuming a session and to choose that
suite, so "new connection per request" rounds are full handshakes of the same
kind. Passthrough is measured against HAProxy twice: its `mode tcp` as it
ships (copying through its buffers) and, as "haproxy-splice", a second
frontend of the same process with `option splice-auto` (portcullis splices
plain streams).

Each round measures one figure on every proxy back to back, in an order that
reverses every round, then the next figure. For each proxy and figure the
median of --rounds rounds is reported, with the proxy's own CPU time
(user+system from /proc) divided by the work done; the ratios
portcullis/HAProxy and portcullis/NGINX are the median of the per-round ratios,
with their range. Last, each proxy is restarted under callgrind and its
user-space instructions per keep-alive request and per full handshake are
counted ("instructions"): CPU time on a shared 2-core VM moves by 15 % between
rounds, instruction counts by a few percent. Prints a
markdown table and writes JSON (--json, default target/bench.json).

    python3 bench/run.py [--seconds 8] [--rounds 5] [--only keepalive,handshake,...]
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY_CPU = "0"
CLIENT_CPU = "1"
HOST = "bench.example.test"
# The TLS 1.3 suite every proxy prefers, whatever the client's order:
# portcullis's own order (src/tls/provider.rs); HAProxy and NGINX are told.
SUITE = "TLS_AES_128_GCM_SHA256"
SUITES = f"{SUITE}:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
BACKEND_PORT = 18080
BACKEND_TLS_PORT = 18443
PORTS = {"portcullis": 20443, "portcullis-aws-lc": 23443, "haproxy": 21443, "nginx": 22443,
         "direct": None}
PASSTHROUGH_PORTS = {"portcullis": 20444, "portcullis-aws-lc": 23444, "haproxy": 21444,
                     "haproxy-splice": 21445}
# Measured for passthrough only: the HAProxy process's second TCP frontend,
# with `option splice-auto` (HAProxy's default copies, as its first does).
PASSTHROUGH_ONLY = {"haproxy-splice": "haproxy"}
# portcullis built with each crypto provider (cargo feature), as proxy names.
PROVIDERS = {"ring": "portcullis", "aws-lc-rs": "portcullis-aws-lc"}
ADMIN_PORTS = {"portcullis": 29901, "portcullis-aws-lc": 29902}
CLK_TCK = os.sysconf("SC_CLK_TCK")
FIGURES = ["keepalive", "handshake", "h2", "latency", "passthrough", "memory", "idleconns",
           "reload", "instructions"]
IDLE_CONNECTIONS = 1000
CALLGRIND_CONNECTIONS = 8
IDLE_SETTLE_SECONDS = 3


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except FileNotFoundError:
            pass
    return total / CLK_TCK


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                m = re.search(r"VmRSS:\s+(\d+)", f.read())
                total += int(m.group(1)) if m else 0
        except FileNotFoundError:
            pass
    return total


def children(pid):
    try:
        out = run(["pgrep", "-P", str(pid)]).stdout.split()
        return [int(p) for p in out]
    except subprocess.CalledProcessError:
        return []


def wait_port(port, timeout=15, listening=True):
    """Waits until something listens on `port` (or, with listening=False,
    until nothing does)."""
    import socket

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                up = True
        except OSError:
            up = False
        if up == listening:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{port}: {'nothing listens' if listening else 'still listens'}")


class Env:
    def __init__(self, tmp, release_bin, loadgen):
        self.tmp = tmp
        self.bin = release_bin
        self.loadgen = loadgen
        self.procs = {}
        self.started = {}

    def pem(self):
        """An ECDSA P-256 CA and a leaf for HOST (and 127.0.0.1)."""
        t = self.tmp
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", f"{t}/ca.key", "-out", f"{t}/ca.crt", "-days", "30",
             "-subj", "/CN=bench-ca"])
        run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{t}/leaf.key", "-out", f"{t}/leaf.csr", "-subj", f"/CN={HOST}"])
        with open(f"{t}/ext.cnf", "w") as f:
            f.write(f"subjectAltName=DNS:{HOST},IP:127.0.0.1\n")
        run(["openssl", "x509", "-req", "-in", f"{t}/leaf.csr", "-CA", f"{t}/ca.crt", "-CAkey",
             f"{t}/ca.key", "-CAcreateserial", "-out", f"{t}/leaf.crt", "-days", "30",
             "-extfile", f"{t}/ext.cnf"])
        # PKCS#8 key for portcullis, combined PEM for HAProxy.
        run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", f"{t}/leaf.key", "-out",
             f"{t}/leaf.pk8"])
        with open(f"{t}/combined.pem", "w") as f:
            f.write(open(f"{t}/leaf.crt").read() + open(f"{t}/leaf.pk8").read())
        with open(f"{t}/big.bin", "wb") as f:
            f.write(os.urandom(8 << 20))

    def start(self, name, cmd, cpu, ports, wrapper=(), wait=15):
        self.started[name] = (cmd, cpu, ports)
        proc = subprocess.Popen(["taskset", "-c", cpu, *wrapper] + cmd,
                                stdout=subprocess.DEVNULL,
                                stderr=open(f"{self.tmp}/{name}.log", "a"),
                                start_new_session=True)
        self.procs[name] = proc
        for p in ports:
            wait_port(p, wait)
        return proc

    def stop(self, name):
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart_under(self, name, wrapper, extra=()):
        """Starts `name` again, its command prefixed by `wrapper` (valgrind)
        and followed by `extra` arguments."""
        cmd, cpu, ports = self.started[name]
        self.stop(name)
        for p in ports:
            wait_port(p, 30, listening=False)
        return self.start(name, cmd + list(extra), cpu, ports, wrapper, wait=120)

    def pids(self, name):
        """The processes doing the work: the process and its children."""
        proc = self.procs[name]
        return [proc.pid] + children(proc.pid)

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    def backend(self):
        t = self.tmp
        conf = f"""
worker_processes 1;
daemon off;
pid {t}/backend.pid;
error_log {t}/backend.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{BACKEND_PORT};
    location / {{ return 200 "hello from the backend\\n"; }}
  }}
  server {{
    listen 127.0.0.1:{BACKEND_TLS_PORT} ssl;
    ssl_certificate {t}/leaf.crt;
    ssl_certificate_key {t}/leaf.key;
    root {t};
    location / {{ }}
  }}
}}
"""
        path = f"{t}/backend.conf"
        open(path, "w").write(conf)
        self.start("backend", ["nginx", "-c", path, "-p", t, "-e", f"{t}/backend.err"],
                   CLIENT_CPU, [BACKEND_PORT, BACKEND_TLS_PORT])

    def portcullis(self, name="portcullis", binary=None, threads=1):
        t = self.tmp
        cfg = f"{t}/{name}"
        os.makedirs(cfg, exist_ok=True)
        manifests = f"""apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench, namespace: default}}
spec:
  gatewayClassName: portcullis
  listeners:
    - {{name: https, protocol: HTTPS, port: {PORTS[name]}, tls: {{certificateRefs: [{{name: bench-tls}}]}}}}
    - {{name: pt, protocol: TLS, port: {PASSTHROUGH_PORTS[name]}, tls: {{mode: Passthrough}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bench, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: https}}]
  rules: [{{backendRefs: [{{name: backend, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: pt, namespace: default}}
spec:
  parentRefs: [{{name: bench, sectionName: pt}}]
  rules: [{{backendRefs: [{{name: backend-tls, port: 443}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: backend, namespace: default}}
spec: {{ports: [{{name: http, port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend-1, namespace: default, labels: {{kubernetes.io/service-name: backend}}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1]}}]
ports: [{{name: http, port: {BACKEND_PORT}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: backend-tls, namespace: default}}
spec: {{ports: [{{name: https, port: 443}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: backend-tls-1, namespace: default, labels: {{kubernetes.io/service-name: backend-tls}}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1]}}]
ports: [{{name: https, port: {BACKEND_TLS_PORT}}}]
"""
        open(f"{cfg}/bench.yaml", "w").write(manifests)
        open(f"{cfg}/secret.yaml", "w").write(
            secret_yaml(open(f"{t}/leaf.crt").read(), open(f"{t}/leaf.pk8").read()))
        self.start(name,
                   [binary or self.bin, "serve", "--config", cfg, "--state", f"{t}/state-{name}",
                    "--listen-address", "127.0.0.1", "--admin-addr",
                    f"127.0.0.1:{ADMIN_PORTS[name]}", "--worker-threads", str(threads),
                    "--tls-session-cache", "0"],
                   PROXY_CPU, [PORTS[name], PASSTHROUGH_PORTS[name]])

    def haproxy(self):
        t = self.tmp
        conf = f"""
global
  nbthread 1
  tune.ssl.cachesize 0
  ssl-default-bind-curves X25519
  ssl-default-bind-options no-tls-tickets
  ssl-default-bind-ciphersuites {SUITES}
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:{PORTS['haproxy']} ssl crt {t}/combined.pem alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:{BACKEND_PORT}
frontend pt
  mode tcp
  bind 127.0.0.1:{PASSTHROUGH_PORTS['haproxy']}
  default_backend pt_be
backend pt_be
  mode tcp
  server s1 127.0.0.1:{BACKEND_TLS_PORT}
frontend pt_splice
  mode tcp
  option splice-auto
  bind 127.0.0.1:{PASSTHROUGH_PORTS['haproxy-splice']}
  default_backend pt_splice_be
backend pt_splice_be
  mode tcp
  option splice-auto
  server s1 127.0.0.1:{BACKEND_TLS_PORT}
"""
        path = f"{t}/haproxy.cfg"
        open(path, "w").write(conf)
        self.start("haproxy", ["haproxy", "-db", "-f", path], PROXY_CPU,
                   [PORTS["haproxy"], PASSTHROUGH_PORTS["haproxy"],
                    PASSTHROUGH_PORTS["haproxy-splice"]])

    def nginx(self):
        t = self.tmp
        os.makedirs(f"{t}/nginx", exist_ok=True)
        conf = f"""
worker_processes 1;
daemon off;
pid {t}/nginx.pid;
error_log {t}/nginx.err warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream be {{ server 127.0.0.1:{BACKEND_PORT}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{PORTS['nginx']} ssl http2;
    ssl_certificate {t}/leaf.crt;
    ssl_certificate_key {t}/leaf.key;
    ssl_ecdh_curve X25519;
    ssl_session_cache off;
    ssl_session_tickets off;
    ssl_protocols TLSv1.2 TLSv1.3;  # 1.22's default stops at TLS 1.2
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites {SUITES};
    location / {{
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
        path = f"{t}/nginx.conf"
        open(path, "w").write(conf)
        self.start("nginx", ["nginx", "-c", path, "-p", f"{t}/nginx", "-e", f"{t}/nginx.err"],
                   PROXY_CPU, [PORTS["nginx"]])


def client(cmd):
    return run(["taskset", "-c", CLIENT_CPU] + cmd).stdout


def wrk(url, seconds, connections, extra=()):
    out = client(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *extra, url])
    m = re.search(r"(\d+) requests in", out)
    requests = int(m.group(1)) if m else 0
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    tr = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    unit = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
    bytes_s = float(tr.group(1)) * unit.get(tr.group(2), 1) if tr else 0.0
    return {"requests": requests, "errors": errors + (int(non2xx.group(1)) if non2xx else 0),
            "bytes_per_s": bytes_s, "raw": out}


def h2load(url, seconds, connections):
    out = client(["h2load", "-c", str(connections), "-m", "10", "-D", str(seconds), url])
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                  out)
    done, ok, failed = (int(x) for x in m.groups()) if m else (0, 0, 0)
    return {"requests": ok, "errors": failed, "raw": out}


def measure(env, name, fn):
    pids = env.pids(PASSTHROUGH_ONLY.get(name, name)) if name != "direct" else []
    before = cpu_seconds(pids)
    rss_before = rss_kib(pids)
    t0 = time.time()
    result = fn()
    result["wall_s"] = time.time() - t0
    result["cpu_s"] = cpu_seconds(pids) - before
    result["rss_kib"] = max(rss_before, rss_kib(pids))
    return result


def keepalive_figure(env, name, url, args):
    r = measure(env, name, lambda: wrk(url, args.seconds, 32))
    return {"keepalive_rps": r["requests"] / args.seconds,
            "keepalive_cpu_us_per_req": r["cpu_s"] * 1e6 / max(r["requests"], 1),
            "keepalive_errors": r["errors"],
            "rss_under_load_kib": r["rss_kib"]}


def handshake_figure(env, name, url, args):
    resumed, suite = session_resumed(PORTS[name], f"{env.tmp}/ca.crt")
    if resumed:
        sys.exit(f"{name} resumed a TLS session: handshake figures would not be full handshakes")
    if suite != SUITE:
        sys.exit(f"{name} chose {suite}, not {SUITE}: the proxies would do different work")
    r = measure(env, name, lambda: wrk(url, args.seconds, 32, ["-H", "Connection: close"]))
    return {"handshake_resumption_off": 1,
            "handshake_cps": r["requests"] / args.seconds,
            "handshake_cpu_us": r["cpu_s"] * 1e6 / max(r["requests"], 1),
            "handshake_errors": r["errors"]}


def h2_figure(env, name, url, args):
    r = measure(env, name, lambda: h2load(url, args.seconds, 32))
    return {"h2_rps": r["requests"] / args.seconds,
            "h2_cpu_us_per_req": r["cpu_s"] * 1e6 / max(r["requests"], 1),
            "h2_errors": r["errors"]}


def latency_figure(env, name, url, args):
    lg = json.loads(client([env.loadgen, "--url", url, "--sni", HOST,
                            "--cacert", f"{env.tmp}/ca.crt", "--rate", str(args.rate),
                            "--seconds", str(args.seconds), "--connections", "32"]))
    # How late the generator's timer released requests (not counted in the
    # latencies): large values would mean the generator, not the proxy, set
    # the pace.
    return {"latency_p50_us": lg["p50_us"], "latency_p99_us": lg["p99_us"],
            "latency_errors": lg["errors"],
            "latency_release_lag_max_us": lg["release_lag_max_us"]}


def passthrough_figure(env, name, url, args):
    pt = f"https://127.0.0.1:{PASSTHROUGH_PORTS[name]}/big.bin"
    r = measure(env, name, lambda: wrk(pt, args.seconds, 4, ["--timeout", "30s"]))
    gib = r["bytes_per_s"] * args.seconds / (1 << 30)
    return {"passthrough_gib_per_s": r["bytes_per_s"] / (1 << 30),
            "passthrough_cpu_s_per_gib": r["cpu_s"] / max(gib, 1e-9),
            "passthrough_errors": r["errors"]}


def terminates_tls(name):
    """Whether `name` is a proxy with a TLS-terminating port."""
    return PORTS.get(name) is not None


# The figures measured in rounds: name -> (function, which proxies have it).
ROUND_FIGURES = {
    "keepalive": (keepalive_figure, lambda n: n not in PASSTHROUGH_ONLY),
    "handshake": (handshake_figure, terminates_tls),
    "h2": (h2_figure, terminates_tls),
    "latency": (latency_figure, terminates_tls),
    "passthrough": (passthrough_figure, lambda n: n in PASSTHROUGH_PORTS),
}


def measure_rounds(env, names, args):
    """Every round measures one figure on every proxy back to back before
    the next figure, in an order that reverses each round, so slow drift in
    the machine's speed (neighbours on a shared VM) lands on all proxies
    alike and the per-round ratios cancel most of it. Returns each proxy's
    list of per-round figures."""
    rounds = {n: [{} for _ in range(args.rounds)] for n in names}
    for i in range(args.rounds):
        order = names if i % 2 == 0 else names[::-1]
        for figure, (fn, applies) in ROUND_FIGURES.items():
            if figure not in args.only:
                continue
            for name in order:
                if not applies(name):
                    continue
                print(f"round {i + 1}/{args.rounds}: {figure} {name}", file=sys.stderr)
                port = PORTS.get(name)
                url = f"https://127.0.0.1:{port}/" if port else f"http://127.0.0.1:{BACKEND_PORT}/"
                rounds[name][i].update(fn(env, name, url, args))
    return rounds


def instructions_figure(env, name, seconds):
    """User-space instructions per keep-alive request and per full handshake,
    counted by callgrind in the proxy (all its processes): the comparison
    this machine's noisy CPU time cannot give. The proxy is restarted under
    valgrind for it. Valgrind hides CPU features it does not emulate (SHA
    extensions among them) from every proxy alike, so crypto takes the same
    generic paths in each; the counts compare code, not wall time."""
    out_dir = os.path.join(env.tmp, f"callgrind-{name}")
    os.makedirs(out_dir, exist_ok=True)
    # callgrind_control cannot reach NGINX's worker (forked, running as
    # nobody): NGINX serves from its one process instead.
    extra = ["-g", "master_process off;"] if name == "nginx" else []
    env.restart_under(name, ["valgrind", "--tool=callgrind", "--dump-instr=no",
                             "--collect-jumps=no",
                             f"--callgrind-out-file={out_dir}/cg.%p"], extra)
    url = f"https://127.0.0.1:{PORTS[name]}/"

    def count(wrk_args):
        """(instructions, requests) of one measured wrk round."""
        wrk(url, 3, CALLGRIND_CONNECTIONS, wrk_args)  # warm-up: first-use paths, pools
        run(["callgrind_control", "-z"])
        before = set(os.listdir(out_dir))
        r = wrk(url, seconds, CALLGRIND_CONNECTIONS, wrk_args)
        run(["callgrind_control", "-d"])
        time.sleep(2)
        total = 0
        for f in set(os.listdir(out_dir)) - before:
            for line in open(os.path.join(out_dir, f)):
                if line.startswith(("summary:", "totals:")):
                    total += int(line.split()[1])
                    break
        return total, max(r["requests"], 1)

    # Full handshakes first (one request each): wrk also opens its
    # connections inside the keep-alive round, and those handshakes are
    # taken out of the per-request figure (HAProxy's cost twice ours, so
    # leaving them in would flatter the proxy with the cheaper handshake).
    total, requests = count(["-H", "Connection: close"])
    handshake = total / requests
    total, requests = count([])
    keepalive = (total - CALLGRIND_CONNECTIONS * handshake) / max(
        requests - CALLGRIND_CONNECTIONS, 1)
    out = {"handshake_instructions": handshake, "keepalive_instructions_per_req": keepalive}
    env.stop(name)
    return out


def leaf_for_serial(tmp, serial):
    """A leaf for HOST with a given serial, signed by the bench CA (PEM)."""
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", f"{tmp}/s{serial}.key", "-out", f"{tmp}/s{serial}.csr", "-subj", f"/CN={HOST}"])
    run(["openssl", "x509", "-req", "-in", f"{tmp}/s{serial}.csr", "-CA", f"{tmp}/ca.crt", "-CAkey",
         f"{tmp}/ca.key", "-set_serial", str(serial), "-out", f"{tmp}/s{serial}.crt", "-days", "30",
         "-extfile", f"{tmp}/ext.cnf"])
    run(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", f"{tmp}/s{serial}.key", "-out",
         f"{tmp}/s{serial}.pk8"])
    return open(f"{tmp}/s{serial}.crt").read(), open(f"{tmp}/s{serial}.pk8").read()


def secret_yaml(crt, key):
    ind = lambda t: "".join("    " + l + "\n" for l in t.splitlines())
    return (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: bench-tls, namespace: default}}\n"
            f"type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{ind(crt)}  tls.key: |\n{ind(key)}")


def served_serial(port, cafile):
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        with ctx.wrap_socket(sock, server_hostname=HOST) as tls:
            return int(tls.getpeercert()["serialNumber"], 16)


def session_resumed(port, cafile):
    """Whether a second connection resumes the first one's TLS session (the
    handshake figures are only full handshakes when this is False), and the
    TLS 1.3 suite the server chose (the same for every proxy: SUITE)."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=cafile)
    session = None
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname=HOST, session=session) as tls:
                if session is not None:
                    return tls.session_reused, tls.cipher()[0]
                # TLS 1.3 tickets arrive after the handshake: read a response.
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                            .encode())
                while tls.recv(65536):
                    pass
                session = tls.session
    raise AssertionError("unreachable")


def reload_figure(env, seconds):
    """Under keep-alive load: every 100 ms add or remove 100 HTTPRoutes, and
    every second replace the served certificate; count failed requests and
    measure, by polling the served serial, how long each new certificate
    takes to be served after its file is written."""
    import threading

    cfg = f"{env.tmp}/portcullis"
    serials = list(range(1000, 1000 + seconds + 1))
    leaves = {s: leaf_for_serial(env.tmp, s) for s in serials}
    port = PORTS["portcullis"]
    stop = threading.Event()
    delays = []

    def write_atomic(path, content):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(content)
        os.replace(tmp, path)

    def churn():
        i = 0
        while not stop.is_set():
            path = f"{cfg}/churn.yaml"
            if i % 2 == 0:
                routes = "".join(
                    f"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: churn-{k}, namespace: default}}\n"
                    f"spec:\n  parentRefs: [{{name: bench, sectionName: https}}]\n  hostnames: [c{k}.{HOST}]\n"
                    f"  rules: [{{backendRefs: [{{name: backend, port: 80}}]}}]\n" for k in range(100))
                write_atomic(path, routes)
            elif os.path.exists(path):
                os.remove(path)
            i += 1
            time.sleep(0.1)

    def certs():
        for serial in serials[1:]:
            if stop.is_set():
                return
            crt, key = leaves[serial]
            written = time.time()
            write_atomic(f"{cfg}/secret.yaml", secret_yaml(crt, key))
            while time.time() - written < 0.9:
                try:
                    if served_serial(port, f"{env.tmp}/ca.crt") == serial:
                        delays.append(time.time() - written)
                        break
                except OSError:
                    pass
            time.sleep(max(0.0, 1.0 - (time.time() - written)))

    crt, key = leaves[serials[0]]
    write_atomic(f"{cfg}/secret.yaml", secret_yaml(crt, key))
    time.sleep(1)
    threads = [threading.Thread(target=churn), threading.Thread(target=certs)]
    for t in threads:
        t.start()
    try:
        r = wrk(f"https://127.0.0.1:{port}/", seconds, 16)
    finally:
        stop.set()
        for t in threads:
            t.join()
    return {
        "reload_requests": r["requests"],
        "reload_failed_requests": r["errors"],
        "reload_cert_changes_seen": len(delays),
        "reload_cert_changes_made": len(serials) - 1,
        "reload_cert_served_median_ms": statistics.median(delays) * 1000 if delays else float("nan"),
        "reload_cert_served_max_ms": max(delays) * 1000 if delays else float("nan"),
    }


def idle_connections_figure(env, name, n=IDLE_CONNECTIONS):
    """Memory per idle TLS connection: open n connections (full handshake and
    one keep-alive request each, so every buffer a served connection keeps is
    allocated), then hold them idle and divide the RSS growth by n."""
    import resource
    import socket
    import ssl
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 256)), hard))
    ctx = ssl.create_default_context(cafile=f"{env.tmp}/ca.crt")
    ctx.set_alpn_protocols(["http/1.1"])
    port = PORTS[name]
    pids = env.pids(name)
    before = rss_kib(pids)
    conns = []
    try:
        for _ in range(n):
            raw = socket.create_connection(("127.0.0.1", port))
            tls = ctx.wrap_socket(raw, server_hostname=HOST)
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            got = b""
            while b"hello from the backend" not in got:
                chunk = tls.recv(4096)
                if not chunk:
                    raise RuntimeError(f"{name} closed an idle-figure connection")
                got += chunk
            conns.append(tls)
        # Idle means idle: portcullis releases an HTTP/1.1 connection's
        # buffers after one to two seconds without traffic (HAProxy and
        # NGINX as soon as a response is written).
        time.sleep(IDLE_SETTLE_SECONDS)
        after = rss_kib(pids)
    finally:
        for c in conns:
            c.close()
    return {"idle_conn_kib": (after - before) / n}


def median_rounds(rounds):
    keys = set().union(*rounds)
    return {k: statistics.median([r[k] for r in rounds if k in r]) for k in keys}


# Figures that describe the run rather than the proxy: no ratio.
NO_RATIO = {"handshake_resumption_off", "latency_release_lag_max_us"}
OTHERS = {"haproxy": "HAProxy", "nginx": "NGINX", "haproxy-splice": "HAProxy-splice"}


def round_ratios(rounds, ours):
    """For each of our builds against each other proxy, each figure's ratio
    within every round (the two measured minutes apart at most), with the
    median and the spread: {"portcullis/haproxy": {figure: {...}}}."""
    out = {}
    for o in ours:
        for other in OTHERS:
            if o not in rounds or other not in rounds:
                continue
            per = {}
            for mine, theirs in zip(rounds[o], rounds[other]):
                for k, a in mine.items():
                    b = theirs.get(k)
                    if k not in NO_RATIO and b:
                        per.setdefault(k, []).append(a / b)
            out[f"{o}/{other}"] = {
                k: {"median": statistics.median(v), "min": min(v), "max": max(v),
                    "rounds": v} for k, v in per.items()}
    return out


def table(results, ratios):
    """Markdown: each proxy's figures, then our builds' ratios to HAProxy and
    NGINX. A figure measured in rounds shows the median of its per-round
    ratios and their range; the others (memory, instructions) one ratio."""
    names = [n for n in ["portcullis", "portcullis-aws-lc", "haproxy", "haproxy-splice", "nginx",
                         "direct"] if n in results]
    ours = [n for n in PROVIDERS.values() if n in results]
    keys = sorted(set().union(*[results[n].keys() for n in names]))
    others = {k: v for k, v in OTHERS.items() if k in results}
    heads = [f"{o}/{label}" for o in ours for label in others.values()]
    lines = ["| figure | " + " | ".join(names + heads) + " |",
             "|---" * (len(names) + len(heads) + 1) + "|"]
    for k in keys:
        row = [f"{results[n][k]:.4g}" if k in results[n] else "–" for n in names]
        for o in ours:
            for other in others:
                spread = ratios.get(f"{o}/{other}", {}).get(k)
                a, b = results.get(o, {}).get(k), results.get(other, {}).get(k)
                if k in NO_RATIO:
                    row.append("–")
                elif spread and len(spread["rounds"]) > 1:
                    row.append(f"{spread['median']:.2f} ({spread['min']:.2f}–{spread['max']:.2f})")
                elif a is not None and b:
                    row.append(f"{a / b:.2f}")
                else:
                    row.append("–")
        lines.append(f"| {k} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--rate", type=int, default=2000, help="fixed request rate for latency")
    p.add_argument("--reload-seconds", type=int, default=30)
    p.add_argument("--only", default=",".join(FIGURES))
    p.add_argument("--json", default=os.path.join(ROOT, "target", "bench.json"))
    p.add_argument("--skip-build", action="store_true")
    p.add_argument("--providers", default="ring,aws-lc-rs",
                   help="crypto providers portcullis is built and measured with")
    args = p.parse_args()
    args.only = set(args.only.split(","))
    providers = [x for x in args.providers.split(",") if x]
    for x in providers:
        if x not in PROVIDERS:
            sys.exit(f"unknown provider {x}: one of {', '.join(PROVIDERS)}")
    tools = ["wrk", "h2load", "haproxy", "nginx", "taskset", "openssl"]
    if "instructions" in args.only:
        tools += ["valgrind", "callgrind_control"]
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"missing {tool}: bash bench/setup.sh installs the benchmark tools")
    release = os.path.join(ROOT, "target", "release")
    if not args.skip_build:
        # One binary per provider, copied aside (the feature switches rustls'
        # provider, so each is a separate build of the same sources).
        for x in providers:
            features = ["--features", "aws-lc-rs"] if x == "aws-lc-rs" else []
            subprocess.run(["cargo", "build", "--release", "--bin", "portcullis", *features],
                           cwd=ROOT, check=True)
            shutil.copy2(os.path.join(release, "portcullis"),
                         os.path.join(release, f"portcullis-{x}"))
        subprocess.run(["cargo", "build", "--release", "--example", "loadgen"], cwd=ROOT,
                       check=True)
    tmp = tempfile.mkdtemp(prefix="portcullis-bench-")
    os.chmod(tmp, 0o755)  # NGINX workers (user nobody) serve big.bin from here
    env = Env(tmp, os.path.join(release, "portcullis"),
              os.path.join(release, "examples", "loadgen"))
    results = {}
    ratios = {}
    try:
        env.pem()
        env.backend()
        for x in providers:
            env.portcullis(PROVIDERS[x], os.path.join(release, f"portcullis-{x}"))
        env.haproxy()
        env.nginx()
        time.sleep(1)
        ours = [PROVIDERS[x] for x in providers]
        if "memory" in args.only:
            for name in ours + ["haproxy", "nginx"]:
                results.setdefault(name, {})["idle_rss_kib"] = rss_kib(env.pids(name))
        # Idle connections first, on processes that have served nothing yet:
        # after the load rounds a process's allocator holds freed memory that
        # 1,000 new connections would reuse, and the figure would say ~0.
        if "idleconns" in args.only:
            for name in ours + ["haproxy", "nginx"]:
                print(f"{IDLE_CONNECTIONS} idle TLS connections: {name}", file=sys.stderr)
                results.setdefault(name, {}).update(idle_connections_figure(env, name))
        names = ours + ["haproxy", "nginx", "direct"]
        if "passthrough" in args.only:
            names.insert(len(ours) + 1, "haproxy-splice")
        rounds = measure_rounds(env, names, args)
        for name, rs in rounds.items():
            results.setdefault(name, {}).update(median_rounds(rs))
        ratios = round_ratios(rounds, ours)
        if "reload" in args.only and "ring" in providers:
            print("reload under load: portcullis", file=sys.stderr)
            results["portcullis"].update(reload_figure(env, args.reload_seconds))
        # Last: each proxy is restarted under valgrind and then stopped.
        if "instructions" in args.only:
            for name in ours + ["haproxy", "nginx"]:
                print(f"instructions under callgrind: {name}", file=sys.stderr)
                results.setdefault(name, {}).update(instructions_figure(env, name, args.seconds))
    finally:
        env.stop_all()
    machine = {
        "cpus": os.cpu_count(),
        "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                           if l.startswith("model name")), "unknown"),
        "kernel": os.uname().release,
        "haproxy": run(["haproxy", "-v"]).stdout.splitlines()[0],
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"machine": machine, "results": results, "ratios": ratios, "rounds": rounds},
                  f, indent=2)
    print(f"\n{machine['cpu_model']}, {machine['cpus']} CPUs, {machine['haproxy']}, "
          f"{machine['nginx']}; median of {args.rounds} rounds of {args.seconds}s\n")
    print(table(results, ratios))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
