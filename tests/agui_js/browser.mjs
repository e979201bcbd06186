// A real browser against examples/agui_server.rs: headless Chromium (Debian's
// package, driven by playwright-core) opens the demo page, streams a run over
// WebSocket and over SSE (EventSource), and the rendered messages, reasoning, tool
// call and state must be those of the scripted run. Screenshots of both go under
// target/. Exits non-zero on any difference.
//
//   node tests/agui_js/browser.mjs http://127.0.0.1:PORT/ OUT_DIR
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [url, outDir = "target"] = process.argv.slice(2);
if (!url) {
  console.error("usage: node browser.mjs <page url> [screenshot dir]");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  for (const transport of ["ws", "sse"]) {
    await page.click(`#${transport}`);
    await page.waitForFunction(
      () => document.getElementById("status").textContent !== "running",
      null,
      { timeout: 30_000 },
    );
    const text = async (id) => page.textContent(`#${id}`);
    assert.equal(await text("status"), "finished", `${transport}: the run did not finish`);
    assert.equal(await text("transport"), transport === "ws" ? "websocket" : "sse");
    assert.equal(await text("messages"), "assistant: It is sunny in Lisbon, 24 °C.");
    assert.equal(await text("reasoning"), "The user wants the weather; look it up first.");
    assert.equal(
      await text("tool"),
      'get_weather({"city":"Lisbon"}) -> {"forecast":"sunny","celsius":24}',
    );
    assert.deepEqual(JSON.parse(await text("state")), {
      city: "Lisbon",
      steps: ["looked up the weather"],
    });
    assert.equal(await text("count"), "26", `${transport}: every event arrived once`);
    await page.screenshot({ path: `${outDir}/agui_demo_${transport}.png`, fullPage: true });
    console.log(`browser run over ${transport} ok`);
  }
  assert.deepEqual(errors, [], "no errors on the page");
} finally {
  await browser.close();
}
