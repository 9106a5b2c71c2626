// Lethe staff client: a little progressive enhancement. Every page works without it.
'use strict';
(() => {
  const body = document.body;

  // A refusal: a low tone, besides the red box (role=alert reads it to screen readers).
  if (body.dataset.refused === 'yes') {
    try {
      const ctx = new AudioContext();
      const o = ctx.createOscillator(), g = ctx.createGain();
      o.type = 'square'; o.frequency.value = 220; g.gain.value = 0.08;
      o.connect(g).connect(ctx.destination); o.start(); o.stop(ctx.currentTime + 0.25);
    } catch (e) { /* no sound: the colours and the alert remain */ }
  }

  // The lookup form shows the fields of the chosen basis only.
  const basis = document.getElementById('basis');
  if (basis) {
    const show = () => {
      for (const el of document.querySelectorAll('[data-for]')) {
        const on = el.dataset.for.split(' ').includes(basis.value);
        el.hidden = !on;
        for (const input of el.querySelectorAll('input')) input.disabled = !on;
      }
    };
    basis.addEventListener('change', show);
    show();
  }

  for (const b of document.querySelectorAll('[data-print]')) b.addEventListener('click', () => window.print());

  // An action that charges the account or stops a card asks once more.
  for (const b of document.querySelectorAll('button[data-confirm]')) {
    b.addEventListener('click', ev => { if (!window.confirm(b.dataset.confirm)) ev.preventDefault(); });
  }

  // Live numbers, and the end of the session: when the server ends it, the page clears
  // what it showed and says so.
  if (body.dataset.live === 'on') {
    const es = new EventSource('/events');
    es.addEventListener('live', ev => {
      const data = JSON.parse(ev.data);
      for (const el of document.querySelectorAll('[data-live]')) {
        const k = el.dataset.live;
        if (k in data) el.textContent = data[k];
        else if (k === 'health_problem') el.textContent = '';
      }
    });
    es.addEventListener('ended', () => {
      es.close();
      const main = document.getElementById('main');
      if (main) main.replaceChildren();
      for (const el of document.querySelectorAll('header nav, form.who')) el.remove();
      document.title = 'Signed out · Lethe';
      document.getElementById('ended').hidden = false;
    });
  }

  // An import's progress.
  const imp = document.querySelector('[data-import]');
  if (imp) {
    const es = new EventSource('/items/import/' + imp.dataset.import + '/events');
    const bar = document.getElementById('progress');
    es.addEventListener('progress', ev => {
      const s = JSON.parse(ev.data);
      bar.value = s.sent;
      for (const el of imp.querySelectorAll('[data-import-field]')) el.textContent = s[el.dataset.importField];
      if (s.finished) {
        es.close();
        document.getElementById('import-status').firstChild.textContent = s.error ? 'Stopped: ' + s.error.message + '. ' : 'Finished: ';
      }
    });
  }
})();
