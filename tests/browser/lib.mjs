// What every browser test shares: Debian's Chromium, launched headless, and the console sign-in.
import { chromium } from 'playwright-core';

// Chromium, trusting exactly the hub's key when YILIAN_SPKI is set (base64 SHA-256 of its
// SubjectPublicKeyInfo: the hub serves HTTPS with a county-CA certificate), not every certificate.
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      ...(process.env.YILIAN_SPKI ? [`--ignore-certificate-errors-spki-list=${process.env.YILIAN_SPKI}`] : [])],
  });
}

// Signs in to the console at `base` and waits for the worklist.
export async function signIn(page, base, user, password) {
  await page.goto(`${base}/login`);
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('form[action="/login"] button')]);
}
