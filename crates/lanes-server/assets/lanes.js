// lanes web UI: live updates. Every page works without this script; it only
// (1) swaps in the live part of the page that /-/events re-renders on the server, with the
//     title and the favicon, and
// (2) tails a job log over the API's log stream, rendering lines as the server does
//     (src/ui/joblog.rs and src/ui/ansi.rs: keep the two in step), following the end until the
//     reader scrolls up.
// Text from the log is only ever set with textContent, never parsed as HTML.
(function () {
  'use strict';

  const live = document.getElementById('live');
  const announce = document.getElementById('announce');
  const favicon = document.getElementById('favicon');

  // (1) Live parts.
  if (live && live.dataset.events && window.EventSource) {
    let lastStatus = null;
    const source = new EventSource(live.dataset.events);
    source.addEventListener('page', (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (_) { return; }
      swap(data.html);
      document.title = data.title;
      if (favicon) favicon.href = '/-/favicon/' + data.status + '.svg';
      if (lastStatus !== null && lastStatus !== data.status && announce) {
        announce.textContent = data.title;
      }
      lastStatus = data.status;
      document.documentElement.dataset.status = data.status;
    });
  }

  // Replaces the live part, keeping the reader's place: which sections were open and which
  // control had the focus.
  function swap(html) {
    const open = new Set(Array.from(live.querySelectorAll('details[id]')).filter((d) => d.open).map((d) => d.id));
    const active = document.activeElement;
    let refocus = null;
    if (active && live.contains(active)) {
      if (active.form) refocus = 'form[action="' + CSS.escape(active.form.getAttribute('action')) + '"] button';
      else if (active.getAttribute('href')) refocus = 'a[href="' + CSS.escape(active.getAttribute('href')) + '"]';
    }
    live.innerHTML = html;
    live.querySelectorAll('details[id]').forEach((d) => { if (open.has(d.id)) d.open = true; });
    if (refocus) {
      const again = live.querySelector(refocus);
      if (again) again.focus();
    }
  }

  // (2) The log tail.
  const log = document.getElementById('log');
  if (!log || log.dataset.done === 'true' || !window.EventSource) return;

  let offset = Number(log.dataset.offset) || 0;
  let number = Number(log.dataset.lines) || 0;
  let buffer = '';
  let ended = false;
  let follow = true;
  const style = { bold: false, dim: false, italic: false, underline: false, fg: null, bg: null };
  const encoder = new TextEncoder();
  const followBox = document.getElementById('follow');
  const followButton = document.getElementById('follow-button');
  let open = Array.from(log.querySelectorAll('details[data-running]')).pop() || null;

  function atBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 48;
  }
  window.addEventListener('scroll', () => {
    follow = atBottom();
    if (followBox) followBox.hidden = follow || ended;
  }, { passive: true });
  if (followButton) {
    followButton.addEventListener('click', () => {
      follow = true;
      followBox.hidden = true;
      window.scrollTo(0, document.documentElement.scrollHeight);
    });
  }

  function connect() {
    const source = new EventSource(log.dataset.stream + '?offset=' + offset);
    source.addEventListener('log', (event) => {
      const data = JSON.parse(event.data);
      if (data.offset !== offset) return; // a chunk from before a reconnect
      offset += encoder.encode(data.text).length;
      buffer += data.text;
      const parts = buffer.split('\n');
      buffer = parts.pop();
      parts.forEach(addLine);
      if (follow) window.scrollTo(0, document.documentElement.scrollHeight);
    });
    source.addEventListener('end', () => {
      ended = true;
      source.close();
      if (buffer) { addLine(buffer); buffer = ''; }
      log.dataset.done = 'true';
      if (followBox) followBox.hidden = true;
    });
    source.addEventListener('error', () => {
      source.close();
      // The browser would reconnect at the first offset; reconnect where the log is now.
      if (!ended) setTimeout(connect, 1000);
    });
  }
  connect();

  const OUTCOMES = [['passed', 'passed'], ['failed', 'failed'], ['timed out', 'timed-out'],
    ['oom-killed', 'oom-killed'], ['cancelled', 'cancelled'], ['cached', 'cached'],
    ['skipped', 'skipped']];
  function outcomeStatus(text) {
    const hit = OUTCOMES.find((o) => text.startsWith(o[0]));
    return hit ? hit[1] : null;
  }
  function looksLikeError(text) {
    return /error|panicked|fail|fatal|exception|traceback/i.test(text);
  }

  function addLine(raw) {
    const empty = document.getElementById('log-empty');
    if (empty) empty.remove();
    number += 1;
    if (raw.startsWith('== step ')) {
      const rest = raw.slice(8);
      const space = rest.indexOf(' ');
      const num = space < 0 ? rest : rest.slice(0, space);
      const name = space < 0 ? '' : rest.slice(space + 1);
      if (open) {
        const title = open.dataset.title;
        const prefix = 'step ' + num + ' ';
        if (title.startsWith(prefix) && name.startsWith(title.slice(prefix.length) + ': ')) {
          const outcome = name.slice(title.length - prefix.length + 2);
          lines(open).appendChild(lineNode(raw));
          close(open, outcome);
          open = null;
          return;
        }
      }
      const cut = name.lastIndexOf(': ');
      const standalone = cut >= 0 && outcomeStatus(name.slice(cut + 2));
      const section = stepNode(num, standalone ? name.slice(0, cut) : name);
      log.appendChild(section);
      lines(section).appendChild(lineNode(raw));
      if (standalone) close(section, name.slice(cut + 2));
      else open = section;
      return;
    }
    let target = open ? lines(open) : null;
    if (!target) {
      const last = log.lastElementChild;
      if (last && last.classList.contains('plain')) target = last;
      else {
        target = document.createElement('div');
        target.className = 'lines plain';
        log.appendChild(target);
      }
    }
    target.appendChild(lineNode(raw));
  }

  function lines(section) { return section.querySelector('.lines'); }

  function stepNode(num, name) {
    const details = document.createElement('details');
    // A requeued job's log holds every attempt, each with its own step 1: ids stay unique.
    const id = 'step-' + num.split('/')[0];
    let unique = id;
    for (let n = 2; document.getElementById(unique); n += 1) unique = id + '-' + n;
    details.id = unique;
    details.className = 'step st-running';
    details.open = true;
    details.dataset.running = '1';
    details.dataset.title = 'step ' + num + ' ' + name;
    const summary = document.createElement('summary');
    const title = document.createElement('span');
    title.className = 'step-title';
    title.textContent = details.dataset.title;
    const outcome = document.createElement('span');
    outcome.className = 'step-outcome';
    summary.append(title, ' ', outcome);
    const body = document.createElement('div');
    body.className = 'lines';
    details.append(summary, body);
    return details;
  }

  function close(section, outcome) {
    const status = outcomeStatus(outcome) || 'passed';
    section.className = 'step st-' + status;
    delete section.dataset.running;
    section.querySelector('.step-outcome').textContent = outcome;
    // A section the reader watched stays open; a failed one points at its first error.
    if (status === 'failed' || status === 'timed-out' || status === 'oom-killed') {
      const output = Array.from(section.querySelectorAll('.line')).filter((l) => l.querySelector('.ts'));
      const first = output.find((l) => looksLikeError(l.textContent)) || output[output.length - 1];
      const bar = document.querySelector('.log-bar');
      if (first && bar) {
        const a = document.createElement('a');
        a.className = 'jump';
        a.href = '#' + first.id;
        a.textContent = 'Jump to the first error in ' + section.dataset.title;
        bar.insertBefore(a, followBox);
      }
    }
  }

  function lineNode(raw) {
    const div = document.createElement('div');
    div.className = 'line';
    div.id = 'L' + number;
    const ln = document.createElement('a');
    ln.className = 'ln';
    ln.href = '#L' + number;
    ln.tabIndex = -1;
    ln.setAttribute('aria-hidden', 'true');
    ln.textContent = String(number);
    div.appendChild(ln);
    let text = raw;
    const stamp = /^\[([^\]]*s)\] /.exec(raw);
    if (stamp) {
      const ts = document.createElement('span');
      ts.className = 'ts';
      ts.textContent = '[' + stamp[1] + ']';
      div.append(ts, ' ');
      text = raw.slice(stamp[0].length);
    }
    spans(text).forEach(([cls, t]) => {
      if (!cls) { div.appendChild(document.createTextNode(t)); return; }
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = t;
      div.appendChild(span);
    });
    return div;
  }

  // ANSI SGR to [class, text] pairs, as src/ui/ansi.rs does.
  function spans(text) {
    text = text.replace(/\r+$/, '');
    const cr = text.lastIndexOf('\r');
    if (cr >= 0) text = text.slice(cr + 1);
    const out = [];
    let current = '';
    const push = () => {
      if (!current) return;
      const cls = className();
      if (out.length && out[out.length - 1][0] === cls) out[out.length - 1][1] += current;
      else out.push([cls, current]);
      current = '';
    };
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      if (c !== '\x1b') {
        if (c === '\t' || c >= ' ') current += c;
        i += 1;
        continue;
      }
      if (text[i + 1] === '[') {
        let j = i + 2;
        while (j < text.length && !(text[j] >= '@' && text[j] <= '~')) j += 1;
        if (text[j] === 'm') { push(); apply(text.slice(i + 2, j)); }
        i = j + 1;
      } else if (text[i + 1] === ']') {
        let j = i + 2;
        while (j < text.length && text[j] !== '\x07' && !(text[j] === '\x1b' && text[j + 1] === '\\')) j += 1;
        i = text[j] === '\x1b' ? j + 2 : j + 1;
      } else {
        i += 2;
      }
    }
    push();
    return out;
  }

  function className() {
    const parts = [];
    if (style.bold) parts.push('b');
    if (style.dim) parts.push('d');
    if (style.italic) parts.push('i');
    if (style.underline) parts.push('u');
    if (style.fg !== null) parts.push('fg' + style.fg);
    if (style.bg !== null) parts.push('bg' + style.bg);
    return parts.join(' ');
  }

  function fold256(n) {
    if (n < 16) return n;
    if (n < 232) {
      const i = n - 16;
      const r = Math.floor(i / 36), g = Math.floor(i / 6) % 6, b = i % 6;
      const max = Math.max(r, g, b);
      const bit = (c) => (c * 2 > max && c > 0 ? 1 : 0);
      const base = bit(r) | (bit(g) << 1) | (bit(b) << 2);
      return max >= 4 ? base + 8 : base;
    }
    return n < 244 ? 8 : 7;
  }

  function apply(params) {
    const codes = params.split(';').map((p) => (p === '' ? 0 : Number(p)));
    for (let k = 0; k < codes.length; k += 1) {
      const code = codes[k];
      if (Number.isNaN(code)) continue;
      if (code === 0) Object.assign(style, { bold: false, dim: false, italic: false, underline: false, fg: null, bg: null });
      else if (code === 1) style.bold = true;
      else if (code === 2) style.dim = true;
      else if (code === 3) style.italic = true;
      else if (code === 4) style.underline = true;
      else if (code === 22) { style.bold = false; style.dim = false; }
      else if (code === 23) style.italic = false;
      else if (code === 24) style.underline = false;
      else if (code >= 30 && code <= 37) style.fg = code - 30;
      else if (code === 39) style.fg = null;
      else if (code >= 40 && code <= 47) style.bg = code - 40;
      else if (code === 49) style.bg = null;
      else if (code >= 90 && code <= 97) style.fg = code - 90 + 8;
      else if (code >= 100 && code <= 107) style.bg = code - 100 + 8;
      else if (code === 38 || code === 48) {
        let colour = null;
        if (codes[k + 1] === 5) { colour = fold256(codes[k + 2]); k += 2; }
        else if (codes[k + 1] === 2) { k += 4; }
        else { k += 1; }
        if (code === 38) style.fg = colour; else style.bg = colour;
      }
    }
  }
})();
