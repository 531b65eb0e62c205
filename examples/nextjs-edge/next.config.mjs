/** @type {import('next').NextConfig} */
const nextConfig = {
  // The example ships no ESLint setup: `next build` checks types only.
  eslint: { ignoreDuringBuilds: true },
};

export default nextConfig;
