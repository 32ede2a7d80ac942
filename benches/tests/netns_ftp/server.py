# A small FTP server for the netns FTP tests and `ftfw-lab netns failover
# --ftp`: USER, PASS, TYPE, PORT, EPRT, PASV, EPSV, RETR (sends SIZE bytes
# of a fixed pattern), QUIT. Active mode connects to the announced address;
# passive mode announces its own address. One thread per control
# connection. With a fourth argument DIR: while DIR/pause exists, each RETR
# sends half of the file, creates DIR/paused-<n>, waits until DIR/pause is
# gone (at most 30 s), then sends the rest (the failover lab's crash comes
# in that pause).
import os
import socket
import sys
import threading
import time

HOST, PORT, SIZE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
PAUSE_DIR = sys.argv[4] if len(sys.argv) > 4 else None
DATA = bytes(i % 251 for i in range(SIZE))
paused = [0]
lock = threading.Lock()


def send_data(d):
    if PAUSE_DIR is None or not os.path.exists(os.path.join(PAUSE_DIR, "pause")):
        d.sendall(DATA)
        return
    half = SIZE // 2
    d.sendall(DATA[:half])
    with lock:
        paused[0] += 1
        n = paused[0]
    open(os.path.join(PAUSE_DIR, f"paused-{n}"), "w").close()
    deadline = time.monotonic() + 30
    while os.path.exists(os.path.join(PAUSE_DIR, "pause")) and time.monotonic() < deadline:
        time.sleep(0.05)
    d.sendall(DATA[half:])


def handle(c):
    f = c.makefile("rb")

    def send(line):
        c.sendall(line.encode() + b"\r\n")

    send("220 ready")
    active = None
    passive = None
    for raw in f:
        line = raw.decode(errors="replace").strip()
        cmd, _, arg = line.partition(" ")
        cmd = cmd.upper()
        if cmd == "USER":
            send("331 password")
        elif cmd == "PASS":
            send("230 logged in")
        elif cmd == "TYPE":
            send("200 type set")
        elif cmd == "PORT":
            n = [int(x) for x in arg.split(",")]
            active = (".".join(map(str, n[:4])), n[4] * 256 + n[5])
            send("200 PORT ok")
        elif cmd == "EPRT":
            parts = arg[1:].split(arg[0])
            active = (parts[1], int(parts[2]))
            send("200 EPRT ok")
        elif cmd in ("PASV", "EPSV"):
            passive = socket.socket()
            passive.bind((HOST, 0))
            passive.listen(1)
            p = passive.getsockname()[1]
            if cmd == "PASV":
                h = HOST.replace(".", ",")
                send(f"227 Entering Passive Mode ({h},{p >> 8},{p & 255}).")
            else:
                send(f"229 Entering Extended Passive Mode (|||{p}|)")
        elif cmd == "RETR":
            send("150 sending")
            try:
                if passive is not None:
                    passive.settimeout(10)
                    d, _ = passive.accept()
                    passive.close()
                    passive = None
                else:
                    d = socket.create_connection(active, timeout=10)
                send_data(d)
                d.close()
                send("226 done")
            except OSError as e:
                send(f"425 no data connection: {e}")
        elif cmd == "QUIT":
            send("221 bye")
            break
        else:
            send("502 not implemented")
    c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((HOST, PORT))
s.listen(16)
print("listening", flush=True)
while True:
    conn, _ = s.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
