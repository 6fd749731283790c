import chunk from 'lodash/chunk';
import dayjs from 'dayjs';
import utc from 'dayjs/plugin/utc';
import { of, map, toArray, lastValueFrom } from 'rxjs';
import { greet } from './greet';

dayjs.extend(utc);

async function main() {
  const doubled = await lastValueFrom(of(1, 2, 3).pipe(map((n) => n * 2), toArray()));
  console.log(greet('vrift node suite'));
  console.log(JSON.stringify(chunk(doubled, 2)));
  console.log(dayjs.utc('2024-01-01T00:00:00Z').add(36, 'hour').format('YYYY-MM-DD HH:mm'));
}

main();
