#pragma once
// Report renderers. HTML: one self-contained file (styles, data and the Vega, Vega-Lite and
// vega-embed libraries inlined) that works offline; Markdown: the same tables for terminals and
// pull requests, without charts.
#include <filesystem>
#include <string>

#include "qeval/report/report_data.h"

namespace qeval::report {

struct ChartLibraries {
  std::string vega, vega_lite, vega_embed;  // minified JavaScript
  std::string versions;                     // "vega 5.33.1, vega-lite 5.23.0, vega-embed 6.29.0"
};

// Reads <node_modules>/vega/build/vega.min.js, vega-lite/build/vega-lite.min.js and
// vega-embed/build/vega-embed.min.js. Throws qeval::Error naming the missing file and telling to
// run the setup script (scripts/install-deps.sh, which runs `npm ci`).
ChartLibraries load_chart_libraries(const std::filesystem::path& node_modules);

// The Vega-Lite specifications of the report's charts, by element id (exposed for tests).
nlohmann::json chart_specs(const ReportData& data);

std::string render_html(const ReportData& data, const ChartLibraries& libs);
std::string render_markdown(const ReportData& data);

}  // namespace qeval::report
