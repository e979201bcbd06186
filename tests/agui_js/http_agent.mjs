// The official AG-UI TypeScript client against examples/agui_server.rs over SSE.
//
// `HttpAgent` (from @ag-ui/client) POSTs a RunAgentInput and reads the run as
// Server-Sent Events through the client's own pipeline: it parses the stream,
// verifies the event order (verifyEvents), and applies every event to the agent's
// messages and state (STATE_DELTA through its JSON Patch). This script checks the
// outcome and exits non-zero on any difference.
//
//   node tests/agui_js/http_agent.mjs http://127.0.0.1:PORT/agent
import { HttpAgent } from "@ag-ui/client";
import assert from "node:assert/strict";

const url = process.argv[2];
if (!url) {
  console.error("usage: node http_agent.mjs <agent url>");
  process.exit(2);
}

const agent = new HttpAgent({ url, threadId: "thread-js" });
const seen = [];
const result = await agent.runAgent(
  { runId: "run-js" },
  {
    onEvent({ event }) {
      seen.push(event.type);
    },
    onRunFailed({ error }) {
      console.error("run failed:", error);
    },
  },
);

const expectedTypes = [
  "RUN_STARTED", "STEP_STARTED", "STATE_SNAPSHOT",
  "REASONING_START", "REASONING_MESSAGE_START", "REASONING_MESSAGE_CONTENT",
  "REASONING_MESSAGE_END", "REASONING_END", "STEP_FINISHED", "STEP_STARTED",
  "TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT",
  "STATE_DELTA", "STEP_FINISHED", "TEXT_MESSAGE_START", "TEXT_MESSAGE_CONTENT",
  "TEXT_MESSAGE_END", "RUN_FINISHED",
];
for (const type of expectedTypes) {
  assert.ok(seen.includes(type), `the client saw no ${type}: ${seen.join(",")}`);
}
assert.equal(seen[0], "RUN_STARTED");
assert.equal(seen.at(-1), "RUN_FINISHED");

// The state: the snapshot, then both deltas applied by the client.
assert.deepEqual(agent.state, { city: "Lisbon", steps: ["looked up the weather"] });

// The messages the client assembled from the stream.
const byId = Object.fromEntries(agent.messages.map((m) => [m.id, m]));
const text = byId["assistant-2"];
assert.ok(text, `no assistant text message: ${JSON.stringify(agent.messages)}`);
assert.equal(text.role, "assistant");
assert.equal(text.content, "It is sunny in Lisbon, 24 °C.");
const withCall = agent.messages.find((m) => (m.toolCalls ?? []).some((c) => c.id === "call-1"));
assert.ok(withCall, `no message carries the tool call: ${JSON.stringify(agent.messages)}`);
const call = withCall.toolCalls.find((c) => c.id === "call-1");
assert.equal(call.function.name, "get_weather");
assert.deepEqual(JSON.parse(call.function.arguments), { city: "Lisbon" });
const toolResult = agent.messages.find((m) => m.role === "tool");
assert.ok(toolResult, "no tool result message");
assert.equal(toolResult.toolCallId, "call-1");
assert.ok(result.newMessages.length >= 3, `new messages: ${JSON.stringify(result.newMessages)}`);

console.log(
  `HttpAgent run ok: ${seen.length} events, ${agent.messages.length} messages, state ${JSON.stringify(agent.state)}`,
);
