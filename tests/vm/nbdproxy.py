#!/usr/bin/env python3
"""A slow link for an NBD leg: a TCP proxy that delivers every chunk of data
DELAY milliseconds after it arrived, in each direction, in order (latency,
not a bandwidth cap). Stopping the process (SIGSTOP) cuts the link with the
connection left open, as a dead WAN link does; SIGCONT restores it.

    nbdproxy.py <listen-port> <server-port> <delay-ms>

Prints "ready" once it listens.
"""
import asyncio
import sys


async def pipe(reader, writer, delay):
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def receive():
        while True:
            data = await reader.read(1 << 16)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(receive(), send())


async def main():
    listen, server, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000

    async def handle(client_r, client_w):
        server_r, server_w = await asyncio.open_connection("127.0.0.1", server)
        await asyncio.gather(pipe(client_r, server_w, delay), pipe(server_r, client_w, delay),
                             return_exceptions=True)

    srv = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
