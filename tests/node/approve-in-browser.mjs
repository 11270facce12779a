// Drives mcp-warden's approvals page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core): signs in with an operator token, waits for a pending approval, clicks a
// decision button, waits for the approval to leave the page.
//
//   node approve-in-browser.mjs BASE_URL OPERATOR_TOKEN [allow-once|allow-always|deny]
//
// Prints one JSON line: {"clicked": "<decision>", "summary": "<text shown>", "args": "<shown>",
// "formHidden", "operator", "whoShown", "signedOut", "csp": "<header>", "consoleErrors": […]}
// and exits 0, or prints {"error": "..."} and exits 1.
import { launch, signedInPage } from "./browser.mjs";

const [base, token, decision = "allow-once"] = process.argv.slice(2);
if (!base || !token) {
  console.log(JSON.stringify({ error: "usage: approve-in-browser.mjs BASE_URL TOKEN [DECISION]" }));
  process.exit(1);
}
let browser;
try {
  browser = await launch();
  const { page, response, errors } = await signedInPage(browser, base, token);
  const csp = response.headers()["content-security-policy"] || "";
  const item = page.locator("li.approval").first();
  await item.waitFor({ timeout: 15000 });
  // What the operator sees once signed in: no sign-in form, who they are, readable arguments.
  const formHidden = await page.locator("#login").isHidden();
  const operator = await page.locator("#operator").textContent();
  const whoShown = await page.locator("#who").isVisible();
  const summary = await item.locator(".summary").textContent();
  const args = await item.locator(".args").textContent();
  await item.locator(`button[data-decision="${decision}"]`).click();
  await page.locator("li.approval").first().waitFor({ state: "detached", timeout: 15000 });
  // Signing out ends the session: the form is back, and a reload does not sign in again.
  await page.click("#logout");
  await page.locator("#login").waitFor({ state: "visible", timeout: 5000 });
  await page.reload();
  await page.locator("#login").waitFor({ state: "visible", timeout: 5000 });
  const signedOut = !(await page.locator("#who").isVisible());
  console.log(JSON.stringify({ clicked: decision, summary, args, formHidden, operator, whoShown, signedOut, csp, consoleErrors: errors }));
  await browser.close();
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e && e.message || e) }));
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
