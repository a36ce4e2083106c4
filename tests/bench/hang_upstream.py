#!/usr/bin/env python3
"""A hung upstream for the isolation scenario (S2): accepts connections, reads requests, never answers.

Usage: python3 hang_upstream.py [PORT]   (default 9103)
"""
import asyncio
import sys


async def hold(reader, writer):
    try:
        while await reader.read(65536):
            pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(hold, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9103))
