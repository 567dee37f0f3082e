// The worklist in headless Chromium as a specialist sees a study the pre-read raised: the
// reason beside its priority, and the button that sets it back to the clinic's priority.
// Usage: node preread.mjs BASE_URL USER PASSWORD PATIENT OUT_DIR
// Prints "reason <text>" and "restored". Exits non-zero on any failure, with a screenshot.
import { launch, signIn } from './lib.mjs';
import { mkdirSync } from 'node:fs';

const [base, user, password, patient, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
try {
  await signIn(page, base, user, password);
  const row = page.locator('#rows tr', { hasText: patient }).first();
  await row.locator('.preread').waitFor({ timeout: 30000 });
  if (!(await page.locator('#rows tr').first().textContent()).includes(patient)) {
    throw new Error('the raised study is not first in the worklist');
  }
  console.log(`reason ${(await row.locator('.preread').textContent()).trim()}`);
  await page.screenshot({ path: `${outDir}/worklist-preread.png`, fullPage: true });
  await row.locator('button[data-priority]').click();
  await page.locator('#rows tr', { hasText: patient }).first().locator('button[data-priority]')
    .waitFor({ state: 'detached', timeout: 10000 });
  if ((await page.locator('#rows tr').first().textContent()).includes(patient)) {
    throw new Error('set back to routine, the study is still first');
  }
  console.log('restored');
} catch (e) {
  await page.screenshot({ path: `${outDir}/worklist-preread-failed.png`, fullPage: true }).catch(() => {});
  console.error(String(e && e.stack || e));
  await browser.close();
  process.exit(1);
}
await browser.close();
