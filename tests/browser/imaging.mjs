// Drives the imaging viewer in headless Chromium, as a radiologist would: open a CT, scroll the
// stack, change the window, measure a length. Usage: node imaging.mjs BASE_URL USER PASSWORD STUDY_UID OUT_DIR
// Prints "slice N" after scrolling, "window C,W" after the bone preset, and
// "length MEASURED EXPECTED" (mm) for a two-click measurement. Exits non-zero on any failure,
// with a screenshot of where it stopped.
import { launch, signIn } from './lib.mjs';
import { mkdirSync } from 'node:fs';

const [base, user, password, study, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
const loaded = async () => {
  await page.waitForFunction(() => { const i = document.getElementById('frame'); return i && i.complete && i.naturalWidth > 0; }, null, { timeout: 15000 });
};
try {
  await signIn(page, base, user, password);
  await page.goto(`${base}/imaging/${encodeURIComponent(study)}`);
  await loaded();
  const firstSrc = await page.getAttribute('#frame', 'src');
  // Scroll the stack with the keyboard and the wheel.
  await page.focus('#viewport');
  for (let i = 0; i < 5; i++) await page.keyboard.press('ArrowDown');
  const box = await page.locator('#viewport').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, 300);
  await page.waitForFunction((s) => document.getElementById('frame').src !== s, firstSrc, { timeout: 10000 });
  await loaded();
  console.log(`slice ${await page.inputValue('#slider')}`);
  // The bone preset: the frame is rendered again with that window.
  await page.click('[data-preset="bone"]');
  // The frame is a blob; the URL it was rendered from is kept beside it.
  await page.waitForFunction(() => /window=400(\.0)?,1800/.test(decodeURIComponent(document.getElementById('frame').dataset.url || '')), null, { timeout: 10000 });
  await loaded();
  const src = decodeURIComponent(await page.getAttribute('#frame', 'data-url'));
  console.log(`window ${src.match(/window=([-0-9.]+,[-0-9.]+)/)[1]}`);
  // Measure: two clicks 200 screen pixels apart; the image is scaled by the stage's transform.
  await page.click('[data-mode="measure"]');
  const [x0, y0] = [box.x + box.width / 2 - 100, box.y + box.height / 2];
  await page.mouse.click(x0, y0);
  await page.mouse.click(x0 + 200, y0);
  const scale = await page.evaluate(() => new DOMMatrix(getComputedStyle(document.getElementById('stage')).transform).a);
  const text = await page.textContent('#measure');
  const measured = parseFloat(text);
  if (!/mm/.test(text)) throw new Error(`measurement without Pixel Spacing: ${text}`);
  console.log(`length ${measured} ${(200 / scale * 0.7).toFixed(1)}`);
  await page.screenshot({ path: `${outDir}/imaging.png`, fullPage: true });
} catch (e) {
  await page.screenshot({ path: `${outDir}/imaging-failure.png`, fullPage: true }).catch(() => {});
  console.error(e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
