// Headless Chromium for the page tests: Debian's /usr/bin/chromium (or $CHROMIUM) driven by
// playwright-core, with the flags this machine's closed network needs.
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

// A new page of `browser` on the approvals page at `base`, signed in as the operator of
// `token`: {page, response (the page's first load), errors (console errors) and failed (URLs
// answered >= 400), both from the first load on, as they come}.
export async function signedInPage(browser, base, token) {
  const page = await browser.newPage();
  const errors = [];
  const failed = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("response", (r) => { if (r.status() >= 400) failed.push(r.url()); });
  const response = await page.goto(`${base}/approvals`);
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  return { page, response, errors, failed };
}
