import type { ReactNode } from "react";

export const metadata = { title: "Vary at the edge: Next.js example" };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", margin: "0 auto", maxWidth: 880, padding: 24 }}>
        {children}
      </body>
    </html>
  );
}
