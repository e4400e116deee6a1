// Render a Mermaid diagram with the real mermaid library in Debian's chromium, driven headless by
// playwright-core (no browser download: it uses /usr/bin/chromium, or $CHROMIUM).
//   node render.mjs <diagram.mmd> [--svg out.svg] [--png out.png]
// Prints one JSON line: {"ok": true, "svg_bytes": N, "messages": [...texts of the arrows...]},
// or {"ok": false, "error": "<mermaid's parse or render error>"} and exits 1.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const MERMAID_JS = require.resolve("mermaid/dist/mermaid.min.js");
// Flags that work on the lab's machines and in CI: no sandbox (root), no GPU, no calls home.
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run"];

const [input, ...rest] = process.argv.slice(2);
if (!input) {
  console.error("usage: node render.mjs <diagram.mmd> [--svg out.svg] [--png out.png]");
  process.exit(2);
}
const option = (name) => (rest.includes(name) ? rest[rest.indexOf(name) + 1] : null);
const source = readFileSync(input, "utf8");

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: CHROMIUM_ARGS });
try {
  const page = await browser.newPage();
  await page.setContent("<!doctype html><html><body><div id=out></div></body></html>");
  await page.addScriptTag({ path: MERMAID_JS });
  const result = await page.evaluate(async (text) => {
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
    try {
      await window.mermaid.parse(text);
      const { svg } = await window.mermaid.render("diagram", text);
      document.getElementById("out").innerHTML = svg;
      const messages = [...document.querySelectorAll("#out .messageText")].map((t) => t.textContent);
      const actors = new Set([...document.querySelectorAll("#out text.actor")].map((t) => t.textContent));
      return { ok: true, svg, messages, participants: [...actors] };
    } catch (e) {
      return { ok: false, error: String(e && e.message ? e.message : e) };
    }
  }, source);
  if (result.ok) {
    const svgPath = option("--svg");
    if (svgPath) writeFileSync(svgPath, result.svg);
    const pngPath = option("--png");
    if (pngPath) await page.locator("#out svg").screenshot({ path: pngPath });
    console.log(JSON.stringify({ ok: true, svg_bytes: result.svg.length, messages: result.messages,
      participants: result.participants }));
  } else {
    console.log(JSON.stringify(result));
    process.exitCode = 1;
  }
} finally {
  await browser.close();
}
