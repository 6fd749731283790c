import React from 'react';
import { createRoot } from 'react-dom/client';
import dayjs from 'dayjs';
import debounce from 'lodash/debounce';
import './style.css';

const h = React.createElement;

function App() {
  const [n, setN] = React.useState(0);
  const bump = React.useMemo(() => debounce(() => setN((x) => x + 1), 50), []);
  return h(
    'main',
    { className: 'app' },
    h('h1', null, 'VRIFT_VITE_MARKER'),
    h('p', null, dayjs('2024-01-01').format('YYYY')),
    h('button', { onClick: bump }, `clicked ${n}`),
  );
}

createRoot(document.getElementById('root')).render(h(App));
