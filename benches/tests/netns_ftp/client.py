# The netns FTP test's client: Python's ftplib, one RETR in MODE (port,
# pasv: ftplib's own commands; eprt, epsv: sent by hand), printing JSON
# {"ok", "bytes", "error"}. Passive mode trusts the 227 address (ftplib
# would otherwise reuse the control connection's peer address), so a 227
# left untranslated would send the client to an address it cannot reach.
# An optional fifth argument is the socket timeout in seconds (10).
import ftplib
import json
import socket
import sys

host, port, mode, want = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 10.0
out = {"ok": False, "bytes": 0, "error": None, "mode": mode}
try:
    f = ftplib.FTP()
    f.connect(host, port, timeout=timeout)
    f.login("user", "pass")
    f.voidcmd("TYPE I")
    got = bytearray()
    if mode in ("port", "pasv"):
        f.set_pasv(mode == "pasv")
        f.trust_server_pasv_ipv4_address = True
        f.retrbinary("RETR file", got.extend)
    elif mode == "eprt":
        ls = socket.socket()
        ls.bind((f.sock.getsockname()[0], 0))
        ls.listen(1)
        ls.settimeout(timeout)
        me, p = ls.getsockname()
        f.voidcmd(f"EPRT |1|{me}|{p}|")
        f.putcmd("RETR file")
        r = f.getresp()
        if not r.startswith("150"):
            raise RuntimeError(r)
        d, _ = ls.accept()
        d.settimeout(timeout)
        while chunk := d.recv(65536):
            got.extend(chunk)
        d.close()
        f.voidresp()
    elif mode == "epsv":
        _, p = ftplib.parse229(f.sendcmd("EPSV"), f.sock.getpeername())
        d = socket.create_connection((host, p), timeout=timeout)
        f.putcmd("RETR file")
        r = f.getresp()
        if not r.startswith("150"):
            raise RuntimeError(r)
        while chunk := d.recv(65536):
            got.extend(chunk)
        d.close()
        f.voidresp()
    f.quit()
    out["bytes"] = len(got)
    out["ok"] = len(got) == want and bytes(got) == bytes(i % 251 for i in range(want))
except Exception as e:  # noqa: BLE001 - reported to the test
    out["error"] = repr(e)
print(json.dumps(out))
