// The study page in headless Chromium as a specialist compares a new ECG with the patient's
// earlier one: the prior is listed with how it matched and its conclusion, then drawn over the
// new one lead by lead on the same grid, then beside it; the pre-read says what is new.
// Usage: node priors.mjs BASE_URL USER PASSWORD STUDY_UID OUT_DIR
// Prints "prior <match> <conclusion>", "new <text>", "overlay <n leads>" and "side <n leads>".
// Exits non-zero on any failure, with a screenshot.
import { launch, signIn } from './lib.mjs';
import { mkdirSync } from 'node:fs';

const [base, user, password, uid, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
try {
  await signIn(page, base, user, password);
  await page.goto(`${base}/studies/${uid}`);
  const row = page.locator('section.priors tr[data-match="same"]').first();
  await row.waitFor({ timeout: 10000 });
  const cells = await row.locator('td').allTextContents();
  console.log(`prior same ${cells[3]}`);
  await page.locator('section.reading').screenshot({ path: `${outDir}/preread-panel.png` });
  const changes = page.locator('.changes li');
  for (const c of await changes.allTextContents()) console.log(`new ${c.trim()}`);
  for (const [mode, label] of [['overlay', '叠加'], ['side', '并排']]) {
    await Promise.all([page.waitForURL(new RegExp(`compare=${mode}`)), row.getByText(label).click()]);
    const svg = page.locator('.compare svg');
    await svg.waitFor({ timeout: 10000 });
    if ((await svg.getAttribute('data-speed-mm-per-s')) !== '25' || (await svg.getAttribute('data-gain-mm-per-mv')) !== '10') {
      throw new Error('the comparison is not on the standard 25 mm/s, 10 mm/mV grid');
    }
    const n = await svg.locator('polyline.prior').count();
    const m = await svg.locator('polyline.trace').count();
    if (n !== m || n === 0) throw new Error(`${mode}: ${m} new and ${n} prior traces`);
    console.log(`${mode} ${n}`);
    await page.locator('section.priors').screenshot({ path: `${outDir}/prior-${mode}.png` });
  }
} catch (e) {
  await page.screenshot({ path: `${outDir}/priors-failed.png`, fullPage: true }).catch(() => {});
  console.error(String(e && e.stack || e));
  await browser.close();
  process.exit(1);
}
await browser.close();
