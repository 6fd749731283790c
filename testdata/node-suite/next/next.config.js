'use strict';
// Minimal Next.js app: lint and type-check are skipped during `next build` to keep the suite fast.
// Run with NEXT_TELEMETRY_DISABLED=1; build output and cache stay in ./.next.
module.exports = {
  eslint: { ignoreDuringBuilds: true },
  typescript: { ignoreBuildErrors: true },
  poweredByHeader: false,
  productionBrowserSourceMaps: false,
};
