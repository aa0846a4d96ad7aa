#!/usr/bin/env python3
"""Soak test of the release server (run by .ci/run; stdlib only; bounded to about 3 minutes).

Starts target/release/quantserve on a free port with the real models, then at once: mixed
translate/classify load from several keep-alive clients, hot swaps, a routing change and back,
a configuration reload, a slowloris and 1,000 idle connections. Ends with SIGTERM while requests
are in flight. Fails (exit 1) on any answer other than 2xx, 429 or 503, any request lost (a
connection broken before its answer), RSS over the bound, a slowloris not cut off, or an unclean
exit. Prints its figures.

    python3 tools/soak.py [--seconds 90] [--clients 6]
"""
import argparse, http.client, json, os, signal, socket, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "quantserve")
TEXTS = ["I loved this movie!", "The plot was dull and far too long.", "How are you today?",
         "The weather is nice, so we walked to the old harbour."]

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def call(port, method, path, body=None, timeout=120):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    c.request(method, path, body=data, headers={"content-type": "application/json"} if data else {})
    r = c.getresponse(); out = (r.status, r.read()); c.close(); return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=90)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--idle", type=int, default=1000)
    args = ap.parse_args()
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="quantserve-soak-")
    config = os.path.join(tmp, "soak.toml")
    with open(config, "w") as f:
        f.write(f"""[server]
http_addr = "127.0.0.1:{port}"
models_dir = "{os.path.join(ROOT, 'models')}"
max_connections = 2048
drain_seconds = 30
[models.sentiment]
default_variant = "int8"
variants = ["int8", "fp32"]
[models.sentiment.routing]
split = {{ int8 = 100 }}
shadow = {{ reference = "fp32", sample_rate = 0.2 }}
[models.en-pt]
default_variant = "int8"
variants = ["int8", "fp32"]
""")
    log = open(os.path.join(tmp, "server.log"), "w")
    began = time.time()
    proc = subprocess.Popen([BINARY, "serve", "--config", config], stderr=log, stdout=log, cwd=ROOT)
    failures = []
    while True:
        try:
            if call(port, "GET", "/health/ready", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() - began > 240:
            print("server did not become ready; log:", open(log.name).read()[-3000:]); return 1
        time.sleep(0.5)
    ready_s = time.time() - began
    time.sleep(2)
    rss_ready = rss_mb(proc.pid)
    rss_peak = [rss_ready]
    stop = threading.Event()
    lock = threading.Lock()
    statuses, lost, per_endpoint = {}, [0], {"classify": 0, "translate": 0}

    def client(i):
        conn = None
        n = 0
        while not stop.is_set():
            n += 1
            if n % 2:
                path, body, ep = "/classify", {"inputs": TEXTS[n % 4]}, "classify"
            else:
                path, body, ep = "/translate", {"q": TEXTS[n % 4], "source": "en", "target": "pt"}, "translate"
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
                r = conn.getresponse(); r.read()
                with lock:
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                    per_endpoint[ep] += 1
                if r.status not in (200, 429, 503):
                    failures.append(f"{path}: {r.status}")
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    lost[0] += 1
                failures.append(f"{path}: lost ({e!r})")
                conn = None

    def admin():
        done = {"swaps": 0, "routing": 0, "reloads": 0}
        steps = 0
        while not stop.is_set():
            steps += 1
            for variant in ("int8", "fp32"):
                st, body = call(port, "POST", f"/admin/models/sentiment/variants/{variant}:load")
                if st != 200: failures.append(f"swap {variant}: {st} {body[:200]}")
                done["swaps"] += 1
            if steps == 2:
                for split in ({"int8": 50, "fp32": 50}, {"int8": 100}):
                    st, body = call(port, "PUT", "/admin/models/sentiment/routing", {"split": split})
                    if st != 200: failures.append(f"routing: {st} {body[:200]}")
                    done["routing"] += 1
            if steps == 3:
                st, body = call(port, "POST", "/admin/reload", {})
                if st != 200: failures.append(f"reload: {st} {body[:200]}")
                done["reloads"] += 1
            stop.wait(5)
        admin.done = done

    def sample():
        while not stop.is_set():
            rss_peak[0] = max(rss_peak[0], rss_mb(proc.pid)); stop.wait(0.5)

    slow_cut = [None]
    def slowloris():
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\n")
        t0 = time.time()
        try:
            while time.time() - t0 < 60:
                s.sendall(b"a"); time.sleep(1)
                s.settimeout(0.01)
                try:
                    if s.recv(1) == b"": break
                    break
                except socket.timeout:
                    pass
        except OSError:
            pass
        slow_cut[0] = time.time() - t0

    idle = []
    for _ in range(args.idle):
        idle.append(socket.create_connection(("127.0.0.1", port)))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    threads += [threading.Thread(target=f) for f in (admin, sample, slowloris)]
    for t in threads: t.start()
    time.sleep(args.seconds)
    stop.set()
    for t in threads: t.join()
    for s in idle: s.close()
    rss_end = rss_mb(proc.pid)
    # Shadow comparison under that load: compared vs dropped copies (the minimum shadow share
    # keeps it from starving at saturation).
    shadow = {"quantserve_shadow_comparisons_total": 0.0, "quantserve_shadow_dropped_total": 0.0}
    st, metrics = call(port, "GET", "/metrics")
    for line in (metrics.decode() if isinstance(metrics, bytes) else str(metrics)).splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in shadow: shadow[name] += float(line.rsplit(" ", 1)[1])
    compared, dropped = shadow["quantserve_shadow_comparisons_total"], shadow["quantserve_shadow_dropped_total"]

    # SIGTERM with requests in flight: every one accepted gets its answer.
    inflight = {"ok": 0, "other": []}
    def one(i):
        try:
            st, _ = call(port, "POST", "/translate", {"q": TEXTS[i % 4] * 3, "source": "en", "target": "pt"})
            if st == 200: inflight["ok"] += 1
            else: inflight["other"].append(st)
        except ConnectionRefusedError:
            inflight["other"].append("refused")
        except (OSError, http.client.HTTPException) as e:
            failures.append(f"in flight at SIGTERM: lost ({e!r})")
    last = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in last: t.start()
    time.sleep(0.3)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    for t in last: t.join()
    code = proc.wait(timeout=60)
    shutdown_s = time.time() - t0
    log.close()
    text = open(log.name).read()

    total = sum(statuses.values())
    bound = max(2.5 * rss_ready, rss_ready + 600)
    print(f"soak: {args.seconds} s, {args.clients} clients, ready after {ready_s:.1f} s")
    print(f"  requests: {total} ({per_endpoint}), statuses {statuses}, lost {lost[0]}")
    print(f"  admin: {getattr(admin, 'done', {})}")
    print(f"  idle connections held: {args.idle}; slowloris cut after {slow_cut[0]:.1f} s")
    print(f"  RSS: ready {rss_ready:.0f} MB, peak {rss_peak[0]:.0f} MB, end {rss_end:.0f} MB (bound {bound:.0f} MB)")
    print(f"  SIGTERM: {inflight['ok']} in-flight answered 200, others {inflight['other']}, exit {code} after {shutdown_s:.1f} s")
    print(f"  shadow copies: {compared:.0f} compared, {dropped:.0f} dropped")
    if dropped > 100 and compared == 0: failures.append(f"shadow comparison starved: {dropped:.0f} dropped, none compared")
    if statuses.get(200, 0) == 0: failures.append("no request answered 200")
    if rss_peak[0] > bound: failures.append(f"RSS peak {rss_peak[0]:.0f} MB over {bound:.0f} MB")
    if slow_cut[0] is None or slow_cut[0] > 20: failures.append(f"slowloris not cut off ({slow_cut[0]})")
    if code != 0: failures.append(f"exit code {code}")
    if "panicked" in text: failures.append("a panic in the server log")
    if failures:
        print("FAILED:", *failures[:20], sep="\n  "); print(text[-2000:]); return 1
    print("soak: OK")
    return 0

if __name__ == "__main__":
    sys.exit(main())
