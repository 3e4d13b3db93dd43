"""A small stdio MCP server for the durable agent tests: ``add_note`` appends its text to
``$SANDBANK_TEST_MCP_LOG`` (one line per call, so a test counts the calls) and sleeps
``seconds`` first (so a test can kill a worker while a call runs)."""

from __future__ import annotations

import os
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")


@server.tool()
def add_note(text: str, seconds: float = 0) -> str:
    """Keep a note; answer how many notes there are."""
    log = os.environ["SANDBANK_TEST_MCP_LOG"]
    with open(log, "a") as f:
        f.write(f"start {text}\n")
    time.sleep(seconds)
    with open(log, "a") as f:
        f.write(f"done {text}\n")
    with open(log) as f:
        count = sum(1 for line in f if line.startswith("done "))
    return f"noted {text!r}: {count} notes"


if __name__ == "__main__":
    server.run()
