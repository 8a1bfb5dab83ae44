// Rebuilds dist/ and fails if it differs from what git has committed, so the
// committed bundle the server embeds always matches src/.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
execFileSync(npm, ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });

// Porcelain status lists modified, staged, deleted and untracked files alike:
// anything but committed-and-identical counts as a difference.
const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=all', '--', 'dist'], {
  cwd: root,
  encoding: 'utf8',
});
if (status.trim() !== '') {
  console.error('client/dist differs from git after a rebuild; run `npm run build` and commit client/dist:');
  console.error(status.trimEnd());
  process.exit(1);
}
console.log('client/dist matches git');
