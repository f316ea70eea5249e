// Allure Report 3 configuration of fl-hil. `fl-hil report` (flhil.harness.report.html) copies it
// beside the installed Allure CLI and sets the paths below through the environment.
//
// - historyPath: one JSON line per generated report; it gives the trend charts and the
//   new / fixed / regressed marks. Keep the file between runs (CI: cache or upload it).
// - categories: the same rules as the categories.json that flhil.harness.report.allure writes into
//   the results directory (Allure 3's report reads them from here, not from the results).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "allure";

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
// The report is read offline and may show lab details: no Google Analytics tag (plugins that honour
// ALLURE_NO_ANALYTICS; fl-hil report also cuts the tag out of the awesome report's index.html).
env.ALLURE_NO_ANALYTICS ??= "true";

function categories() {
  try {
    return JSON.parse(readFileSync(env.FLHIL_ALLURE_CATEGORIES, "utf-8"));
  } catch (e) {
    console.warn(`fl-hil: no failure categories (${e.message})`);
    return [];
  }
}

export default defineConfig({
  name: "fl-hil",
  output: env.FLHIL_ALLURE_OUTPUT || join(here, "reports", "allure-report"),
  historyPath: env.FLHIL_ALLURE_HISTORY || join(here, "reports", "history.jsonl"),
  historyLimit: 50,
  categories: categories(),
  plugins: {
    awesome: {
      options: {
        reportName: "fl-hil",
        reportLanguage: "en",
        groupBy: ["parentSuite", "suite"],
      },
    },
  },
});
