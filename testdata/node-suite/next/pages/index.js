import { useState } from 'react';
import chunk from 'lodash/chunk';

export async function getStaticProps() {
  return { props: { rows: chunk(['typescript', 'webpack', 'jest', 'vite', 'next'], 2) } };
}

export default function Home({ rows }) {
  const [open, setOpen] = useState(false);
  return (
    <main>
      <h1>VRIFT_NEXT_MARKER</h1>
      <button onClick={() => setOpen(!open)}>{open ? 'hide' : 'show'}</button>
      <ul>
        {rows.map((r) => (
          <li key={r.join()}>{r.join(' + ')}</li>
        ))}
      </ul>
    </main>
  );
}
