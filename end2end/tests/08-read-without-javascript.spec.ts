import { expect, test } from "@playwright/test";
import { cancelQuietly, restRoot, waitForJob, type Job } from "./fixtures/api";
import { accountsCsv, uniqueName } from "./fixtures/csv";
import { TestSite } from "./fixtures/site";

// Pages are rendered on the server with their data: reading needs no JavaScript.
test.use({ javaScriptEnabled: false });

test("job pages read fine with JavaScript off", async ({ page, request }) => {
  const site = await TestSite.start();
  let id = -1;
  try {
    const name = uniqueName("No script");
    const res = await request.post(restRoot("research"), {
      multipart: {
        file: { name: "accounts.csv", mimeType: "text/csv", buffer: Buffer.from(accountsCsv(site, 2)) },
        name,
      },
    });
    expect(res.status()).toBe(201);
    id = ((await res.json()) as Job).id;
    await waitForJob(request, "research", id, (j) => j.status === "completed");

    await page.goto("/");
    await expect(page.getByRole("link", { name, exact: true })).toBeVisible();

    await page.goto(`/processing/${id}`);
    await expect(page.getByRole("heading", { name })).toBeVisible();
    await expect(page.getByRole("status", { name: "Job status" })).toHaveText(/Completed/);
    await expect(page.getByRole("progressbar", { name: "Progress" })).toHaveAttribute("aria-valuenow", "100");

    await page.goto(`/processing/${id}/accounts`);
    await expect(page.getByRole("cell", { name: /Company 1 – industrial widgets/ })).toBeVisible();
    await expect(page.getByRole("cell", { name: /hello@company2\.example/ })).toBeVisible();

    const missing = await page.goto("/processing/99999999");
    expect(missing?.status()).toBe(404);
    await expect(page.getByRole("heading", { name: "No such job" })).toBeVisible();
  } finally {
    await cancelQuietly(request, "research", id);
    await site.close();
  }
});
