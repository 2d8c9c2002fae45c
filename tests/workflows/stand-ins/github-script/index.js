// Stand-in for actions/github-script (tests only): the workflow's own script runs unchanged, with
// `context` built from the event file as @actions/github builds it and a `github` client whose
// REST calls answer from $STAND_IN_GITHUB_API ({"pulls": [...]}). A call it does not model fails.
const fs = require('fs');

const input = (name) => (process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] || '').trim();
const log = (entry) =>
  fs.appendFileSync(process.env.STAND_IN_LOG, JSON.stringify({ tool: 'github-script', ...entry }) + '\n');

const core = {
  setOutput(name, value) {
    const delimiter = `ghadelimiter_${process.pid}_${Date.now()}`;
    fs.appendFileSync(process.env.GITHUB_OUTPUT, `${name}<<${delimiter}\n${value}\n${delimiter}\n`);
  },
  setFailed(message) {
    process.exitCode = 1;
    console.log(`::error::${message}`);
  },
  info: (message) => console.log(message),
  warning: (message) => console.log(`::warning::${message}`),
  notice: (message) => console.log(`::notice::${message}`),
};

const [owner, repo] = process.env.GITHUB_REPOSITORY.split('/');
const context = {
  payload: JSON.parse(fs.readFileSync(process.env.GITHUB_EVENT_PATH, 'utf8')),
  eventName: process.env.GITHUB_EVENT_NAME,
  sha: process.env.GITHUB_SHA,
  ref: process.env.GITHUB_REF,
  runId: Number(process.env.GITHUB_RUN_ID),
  serverUrl: process.env.GITHUB_SERVER_URL || 'https://github.com',
  repo: { owner, repo },
};

const api = JSON.parse(fs.readFileSync(process.env.STAND_IN_GITHUB_API, 'utf8'));
// GET /repos/{owner}/{repo}/pulls: `head` is "owner:branch" (GitHub's pull request head label).
async function listPulls(params) {
  log({ request: 'GET /repos/{owner}/{repo}/pulls', params });
  if (params.owner !== owner || params.repo !== repo) {
    throw new Error(`pulls.list: ${params.owner}/${params.repo} is not this repository (${owner}/${repo})`);
  }
  const state = params.state || 'open';
  const data = api.pulls.filter(
    (pull) =>
      (state === 'all' || pull.state === state) &&
      (!params.head || pull.head.label === params.head) &&
      (!params.base || pull.base.ref === params.base),
  );
  return { status: 200, data };
}
const github = {
  rest: { pulls: { list: listPulls } },
  paginate: async (method, params) => (await method(params)).data,
};

const AsyncFunction = Object.getPrototypeOf(async () => null).constructor;
new AsyncFunction('require', 'github', 'context', 'core', input('script'))(require, github, context, core)
  .then((result) => core.setOutput('result', result === undefined ? '' : JSON.stringify(result)))
  .catch((error) => {
    console.error(error.stack);
    core.setFailed(error.message);
  });
