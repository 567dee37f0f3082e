// Drives the clinic page in headless Chromium, as township clinic staff would: the page is open
// before the study exists and is never reloaded; the study's journey advances by itself to
// "delivered"; a critical result raises the alarm; a wrong PIN is refused, the right one
// acknowledges it; opening the report PDF marks it printed; the English page is there too.
// Usage: node clinic.mjs PAGE_URL PATIENT CLINICIAN PIN OUT_DIR
// Prints "stage NAME" per journey step seen done, "alarm", "wrong-pin", "acknowledged",
// "printed" and "english". Exits non-zero on any failure, with a screenshot of where it stopped.
import { launch } from './lib.mjs';
import { mkdirSync } from 'node:fs';

const [base, patient, clinician, pin, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launch();
const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
const page = await context.newPage();
try {
  await page.goto(`${base}/`);
  const row = page.locator('tr[data-study]', { hasText: patient }).first();
  await row.waitFor({ timeout: 60000 });
  for (const stage of ['recorded', 'stored', 'claimed', 'reported', 'delivered']) {
    await row.locator(`td[data-stage="${stage}"].done`).waitFor({ timeout: 60000 });
    console.log(`stage ${stage}`);
  }
  const alarm = page.locator('section.alarm', { hasText: patient });
  await alarm.waitFor({ timeout: 30000 });
  console.log('alarm');
  await page.screenshot({ path: `${outDir}/clinic-alarm.png`, fullPage: true });

  await alarm.locator('select[name=clinician]').selectOption(clinician);
  await alarm.locator('input[name=pin]').fill(pin === '0000' ? '1111' : '0000');
  await Promise.all([page.waitForURL(/err=1/), alarm.locator('button').click()]);
  const refused = await page.locator('.flash.bad').textContent();
  if (!refused.includes('PIN')) throw new Error(`a wrong PIN was not refused: ${refused}`);
  console.log('wrong-pin');

  const again = page.locator('section.alarm', { hasText: patient });
  await again.locator('select[name=clinician]').selectOption(clinician);
  await again.locator('input[name=pin]').fill(pin);
  await Promise.all([page.waitForURL(/msg=/), again.locator('button').click()]);
  if (await page.locator('.flash.bad').count()) throw new Error(await page.locator('.flash.bad').textContent());
  await page.locator('section.alarm', { hasText: patient }).waitFor({ state: 'detached', timeout: 10000 });
  const done = page.locator('tr[data-study]', { hasText: patient }).first().locator('[data-critical="acknowledged"]');
  await done.waitFor({ timeout: 10000 });
  if (!(await done.textContent()).includes(clinician)) throw new Error('the acknowledgement does not name the clinician');
  console.log('acknowledged');

  // The PDF comes from the hub a moment after the report; the page shows the link once it is here.
  const link = page.locator('tr[data-study]', { hasText: patient }).first().locator('a.pdf');
  await link.waitFor({ timeout: 60000 });
  const href = await link.getAttribute('href');
  const opened = await page.evaluate(async (h) => {
    const r = await fetch(h);
    return `${r.status} ${r.headers.get('content-type')} ${(await r.arrayBuffer()).byteLength}`;
  }, href);
  if (!opened.startsWith('200 application/pdf')) throw new Error(`the report PDF: ${opened}`);
  await page.locator('tr[data-study]', { hasText: patient }).first()
    .locator('td[data-stage="printed"].done').waitFor({ timeout: 10000 });
  console.log('printed');
  const hub = await page.locator('[data-health="hub"]').textContent();
  console.log(`hub ${hub}`);
  await page.screenshot({ path: `${outDir}/clinic.png`, fullPage: true });

  await page.goto(`${base}/?lang=en`);
  await page.getByText('Studies and where they are').waitFor({ timeout: 5000 });
  console.log('english');
} catch (e) {
  await page.screenshot({ path: `${outDir}/clinic-failed.png`, fullPage: true }).catch(() => {});
  console.error(String(e && e.stack || e));
  await browser.close();
  process.exit(1);
}
await browser.close();
