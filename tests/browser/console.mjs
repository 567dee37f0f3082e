// Drives the specialists' console in headless Chromium, as a specialist would:
// sign in, wait for the study to arrive in the worklist, open it, report it.
// Usage: node console.mjs BASE_URL USER PASSWORD PATIENT_NAME OUT_DIR [CALIPER_PATIENT A B RATE]
// Prints "opened-ms N" (time from click to the tracing drawn) and "reported"; with the caliper
// arguments it opens that patient's study at 50 mm/s, clicks samples A and B of the first row
// with the calipers and prints "caliper-ms N". Exits non-zero on any failure, with a
// screenshot of where it stopped.
import { launch, signIn } from './lib.mjs';
import { mkdirSync } from 'node:fs';

const [base, user, password, patient, outDir, caliperPatient, sampleA, sampleB, rateHz] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
try {
  await signIn(page, base, user, password);
  // The worklist refreshes itself: the study appears without a reload.
  const link = page.locator('a[href^="/studies/"]', { hasText: patient }).first();
  await link.waitFor({ timeout: 30000 });
  await page.screenshot({ path: `${outDir}/worklist.png`, fullPage: true });
  const t0 = Date.now();
  await link.click();
  await page.locator('svg.ecg polyline.trace').first().waitFor({ timeout: 10000 });
  console.log(`opened-ms ${Date.now() - t0}`);
  const traces = await page.locator('svg.ecg polyline.trace').count();
  console.log(`traces ${traces}`);
  await page.screenshot({ path: `${outDir}/viewer.png`, fullPage: true });
  await page.locator('input[name=statement]').first().check();
  await page.fill('textarea[name=findings]', '窦性心律，心率约75次/分。');
  await page.fill('textarea[name=conclusion]', '未见急性ST段抬高。');
  await page.click('form[action$="/report"] button');
  await page.getByText('已出报告').waitFor({ timeout: 10000 });
  console.log('reported');
  // The clinic's agent confirms receipt: the page shows when, instead of "待确认" (not yet).
  const deadline = Date.now() + 30000;
  while ((await page.content()).includes('待确认')) {
    if (Date.now() > deadline) throw new Error('the report was not confirmed by the clinic within 30 s');
    await page.waitForTimeout(500);
    await page.reload();
  }
  console.log('delivered');
  if (caliperPatient) {
    await page.goto(`${base}/`);
    const other = page.locator('a[href^="/studies/"]', { hasText: caliperPatient }).first();
    await other.waitFor({ timeout: 30000 });
    const href = await other.getAttribute('href');
    await page.goto(`${base}${href}?speed=50&gain=10`);
    await page.locator('svg.ecg polyline.trace').first().waitFor({ timeout: 10000 });
    // Screen positions of samples A and B on the first row's baseline (the viewer's layout:
    // a 10 mm left margin, rows 30 mm high with the baseline 17.5 mm from the top).
    const points = await page.evaluate(([a, b, rate]) => {
      const svg = document.querySelector('svg.ecg');
      const speed = Number(svg.dataset.speedMmPerS);
      const ctm = svg.getScreenCTM();
      const at = (i) => {
        const p = svg.createSVGPoint();
        p.x = 10 + (i / rate) * speed;
        p.y = 17.5;
        const s = p.matrixTransform(ctm);
        return [s.x, s.y];
      };
      return [at(a), at(b)];
    }, [Number(sampleA), Number(sampleB), Number(rateHz)]);
    for (const [x, y] of points) await page.mouse.click(x, y);
    const ms = await page.locator('#caliper').getAttribute('data-dt-ms');
    console.log(`caliper-ms ${ms}`);
    await page.screenshot({ path: `${outDir}/calipers.png`, fullPage: true });
  }
} catch (e) {
  await page.screenshot({ path: `${outDir}/failure.png`, fullPage: true }).catch(() => {});
  console.error(String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
