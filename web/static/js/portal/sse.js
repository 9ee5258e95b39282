// Server-sent events read from a fetch() body. EventSource cannot POST or send headers,
// so the stream is parsed here: events are separated by a blank line, and one event may
// arrive split across several network chunks (or several events in one chunk).

/** Parse one event block ("event: x\ndata: {...}") into its payload, or null. */
export function parseBlock(block) {
  let type = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return null;
  let payload;
  try {
    payload = JSON.parse(data.join("\n"));
  } catch {
    return null; // not ours; the answer stream only sends JSON
  }
  if (payload === null || typeof payload !== "object") return null;
  if (!payload.type) payload.type = type;
  return payload;
}

/** Yield each event payload of a ReadableStream of SSE bytes, in order. */
export async function* readEvents(stream) {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      // Our server ends lines with \n and JSON never holds a raw \r, so dropping every \r
      // turns \r\n line ends (a proxy's) into \n even when \r and \n land in two chunks.
      buffer += decoder.decode(value, { stream: true }).replace(/\r/g, "");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseBlock(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event) yield event;
      }
    }
    buffer += decoder.decode().replace(/\r/g, "");
    const last = buffer.trim() ? parseBlock(buffer) : null;
    if (last) yield last;
  } finally {
    // A consumer that stops early closes the connection, so the server frees the model.
    if (!finished) reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
