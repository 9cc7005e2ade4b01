"""Protocol ping: sends a Spark RegisterDriver RPC and expects an empty RpcResponse.
Usage: ping.py HOST PORT  (exit 0 on success)."""
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
app = b"croupier-ping"
body = bytes([4]) + struct.pack(">i", len(app)) + app + struct.pack(">q", 10000)  # RegisterDriver
req_id = 4242
header = bytes([3]) + struct.pack(">qi", req_id, len(body))                        # RpcRequest
frame = struct.pack(">q", 8 + len(header) + len(body)) + header + body
with socket.create_connection((host, port), timeout=5) as s:
    s.sendall(frame)
    buf = b""
    while len(buf) < 21:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed before a response")
        buf += chunk
    length, mtype, rid, blen = struct.unpack(">qBqi", buf[:21])
    if mtype != 4 or rid != req_id or blen != 0 or length != 21:
        sys.exit(f"unexpected response: len={length} type={mtype} id={rid} bodyLen={blen}")
print("ping ok")
