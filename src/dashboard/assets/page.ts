// The dashboard's HTML document (served at GET /): the static shell that /dashboard/app.js fills
// in. Semantic landmarks, labelled controls and a focusable trace panel keep it usable by keyboard
// and screen readers.

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fulgur · training dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/style.css">
<script type="module" src="/dashboard/app.js"></script>
</head>
<body>
<header class="top">
  <h1><span class="logo" aria-hidden="true">⚡</span> Fulgur <span class="muted">training</span></h1>
  <dl class="stats" aria-label="Run status">
    <div><dt>latest step</dt><dd id="stat-step">–</dd></div>
    <div><dt>adapter</dt><dd id="stat-adapter">–</dd></div>
    <div><dt>rollouts</dt><dd id="stat-rollouts">–</dd></div>
  </dl>
  <ul id="status-counts" class="counts" aria-label="Rollouts by status"></ul>
  <p class="updated"><span class="live-dot" aria-hidden="true"></span><span id="updated">connecting…</span></p>
</header>
<p id="error" class="error" role="alert" hidden></p>
<form id="auth" class="auth" hidden>
  <label for="api-key">The store asks for an API key:</label>
  <input id="api-key" type="password" autocomplete="off">
  <button type="submit">Use key</button>
</form>
<main>
  <section aria-labelledby="metrics-title">
    <h2 id="metrics-title" class="visually-hidden">Training metrics</h2>
    <div id="charts" class="charts"></div>
  </section>
  <div class="split">
    <section class="card rollouts" aria-labelledby="rollouts-title">
      <div class="section-head">
        <h2 id="rollouts-title">Rollouts</h2>
        <label>status <select id="filter-status"><option value="">all</option></select></label>
        <label>mode <select id="filter-mode"><option value="">all</option><option>train</option><option>val</option><option>test</option></select></label>
      </div>
      <table class="rollout-table">
        <thead><tr><th scope="col">rollout</th><th scope="col">status</th><th scope="col">mode</th><th scope="col">group</th><th scope="col" class="num">reward</th><th scope="col" class="num">tries</th><th scope="col" class="num">duration</th><th scope="col" class="num">created</th></tr></thead>
        <tbody id="rollouts-body"></tbody>
      </table>
      <nav class="pager" aria-label="Rollout pages">
        <button type="button" id="page-prev">‹ newer</button>
        <span id="page-info"></span>
        <button type="button" id="page-next">older ›</button>
      </nav>
    </section>
    <section id="trace" class="card trace" aria-labelledby="trace-title" tabindex="-1" hidden>
      <div id="trace-body"></div>
    </section>
  </div>
</main>
</body>
</html>
`;
