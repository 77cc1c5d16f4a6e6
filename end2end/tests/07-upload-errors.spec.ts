import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "@playwright/test";
import { csv, uniqueName } from "./fixtures/csv";
import { DashboardPage } from "./fixtures/pages";

// A bad file is explained on the dashboard and creates no job.
test("a file with a bad row is refused with the line and the problem", async ({ page, request }) => {
  const dashboard = new DashboardPage(page);
  await dashboard.open();
  const name = uniqueName("Bad rows");
  const bad = csv(
    ["Company", "Website", "Notes"],
    [
      ["Acme", "acme.example", ""],
      ["", "", "call back on Monday"],
    ],
  );
  await dashboard.upload("research", bad, { name });
  const alert = dashboard.form("research").getByRole("alert");
  await expect(alert).toContainText("line 3");
  await expect(page).toHaveURL(/\/$/);
  // The form is ready for the next try.
  await expect(dashboard.form("research").getByRole("button", { name: "Start research" })).toBeEnabled();

  const jobs = (await (await request.get("/api/process")).json()) as { name: string }[];
  expect(jobs.map((j) => j.name)).not.toContain(name);
});

test("a concurrency outside 1–64 is refused", async ({ page }) => {
  const dashboard = new DashboardPage(page);
  await dashboard.open();
  const form = dashboard.form("preprocess");
  // The browser's own check stops 0 before it is sent; the field says what is allowed.
  await form.getByLabel("Concurrency").fill("0");
  await form.getByLabel("CSV file").setInputFiles({
    name: "rows.csv",
    mimeType: "text/csv",
    buffer: Buffer.from("Company\nAcme\n"),
  });
  await form.getByRole("button", { name: "Start preprocessing" }).click();
  await expect(page).toHaveURL(/\/$/);
  expect(await form.getByLabel("Concurrency").evaluate((el: HTMLInputElement) => el.validity.valid)).toBe(false);
});

test("a file over the upload limit is refused at once with the limit, and creates nothing", async ({ page, request }) => {
  const dashboard = new DashboardPage(page);
  await dashboard.open();
  const name = uniqueName("Too big");
  // 51 MiB, over the default 50 MiB limit, written to a file as a person would pick it.
  const dir = mkdtempSync(join(tmpdir(), "jobdeck-e2e-"));
  const file = join(dir, "too-big.csv");
  writeFileSync(file, "Company\n" + "Acme Anvils Incorporated\n".repeat(Math.ceil((51 * 1024 * 1024) / 25)));
  try {
    const form = dashboard.form("preprocess");
    await form.getByLabel("CSV file").setInputFiles(file);
    await form.getByLabel("Name").fill(name);
    await form.getByRole("button", { name: /^Start/ }).click();
    await expect(form.getByRole("alert")).toContainText("larger than the limit");
    await expect(page).toHaveURL(/\/$/);
    const jobs = (await (await request.get("/api/preprocess/jobs")).json()) as { name: string }[];
    expect(jobs.map((j) => j.name)).not.toContain(name);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
