import { expect, test } from "@playwright/test";
import { restRoot } from "./fixtures/api";
import { uniqueName } from "./fixtures/csv";
import { DashboardPage } from "./fixtures/pages";

// The dashboard shows the newest 50 jobs; older ones are a click away, with the page in the URL.
test("older jobs are on the next page of the dashboard and the page lives in the URL", async ({ page, request }) => {
  const create = async (name: string) => {
    const res = await request.post(restRoot("preprocess"), {
      multipart: {
        file: { name: "one.csv", mimeType: "text/csv", buffer: Buffer.from("company\nAcme\n") },
        name,
        concurrency: "1",
      },
    });
    expect(res.status()).toBe(201);
  };
  const oldest = uniqueName("Oldest of many");
  await create(oldest);
  const newest = uniqueName("Newest of many");
  for (let i = 0; i < 49; i++) await create(uniqueName(`Filler ${i}`));
  await create(newest);

  const dashboard = new DashboardPage(page);
  await dashboard.open();
  const pager = page.getByRole("navigation", { name: "Pages of jobs" });
  await expect(pager).toContainText(/Jobs 1–50 of \d+/);
  await expect(dashboard.row(newest)).toBeVisible();
  await expect(dashboard.row(oldest)).toHaveCount(0);
  await expect(page.getByRole("row")).toHaveCount(51); // the heading row and 50 jobs

  await pager.getByRole("link", { name: "Older →" }).click();
  await expect(page).toHaveURL(/\/\?offset=50$/);
  await expect(dashboard.row(oldest)).toBeVisible();
  await expect(dashboard.row(newest)).toHaveCount(0);
  await expect(pager).toContainText(/Jobs 51–\d+ of \d+/);

  // A reload keeps the page; Newer goes back to the first.
  await page.reload();
  await expect(dashboard.row(oldest)).toBeVisible();
  await page.getByRole("navigation", { name: "Pages of jobs" }).getByRole("link", { name: "← Newer" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(dashboard.row(newest)).toBeVisible();
});
