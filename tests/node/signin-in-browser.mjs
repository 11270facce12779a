// Drives mcp-warden's approvals page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) to sign mcp-warden in to an OAuth-protected upstream: signs in with an
// operator token, clicks the upstream's sign-in button, follows the authorization server (which
// signs its user in by itself) back to mcp-warden's /oauth/callback, and reads what it says.
//
//   node signin-in-browser.mjs BASE_URL OPERATOR_TOKEN UPSTREAM
//
// Prints one JSON line: {"listed": "<the upstream's line before>", "button": "<its label>",
// "landed": "<URL of the last page>", "text": "<its text>", "failed": [URLs answered >= 400],
// "consoleErrors": […]} and exits 0, or prints {"error": "..."} and exits 1.
import { launch, signedInPage } from "./browser.mjs";

const [base, token, upstream] = process.argv.slice(2);
if (!base || !token || !upstream) {
  console.log(JSON.stringify({ error: "usage: signin-in-browser.mjs BASE_URL TOKEN UPSTREAM" }));
  process.exit(1);
}
let browser;
try {
  browser = await launch();
  const { page, errors, failed } = await signedInPage(browser, base, token);
  const row = page.locator("#signin-list li", { hasText: upstream }).first();
  await row.waitFor({ timeout: 15000 });
  const listed = await row.textContent();
  const button = row.locator("button");
  const label = await button.textContent();
  await Promise.all([
    page.waitForURL((u) => u.pathname === "/oauth/callback", { timeout: 30000 }),
    button.click(),
  ]);
  await page.waitForLoadState("load");
  const text = await page.locator("body").textContent();
  console.log(JSON.stringify({ listed, button: label, landed: page.url(), text, failed, consoleErrors: errors }));
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.message || e) }));
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
