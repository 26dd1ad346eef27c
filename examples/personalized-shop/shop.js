// The page asks segmint what this visitor should see and restyles itself.
// Query parameters: ?user=C000042 (or an anonymous visitor), ?api=http://127.0.0.1:8000,
// ?key=dk_... (a decide key: `segmint keys create shop-page --scope decide`).
const q = new URLSearchParams(location.search);
const API = q.get('api') || 'http://127.0.0.1:8000';
const DECIDE_KEY = q.get('key') || '';
const user = q.get('user');
const anon = localStorage.anonymousId || (localStorage.anonymousId = crypto.randomUUID());
const url = user ? API + '/v1/decide/' + encodeURIComponent(user)
                 : API + '/v1/decide?anonymous_id=' + encodeURIComponent(anon);

fetch(url + (url.includes('?') ? '&' : '?') + 'n=6', {headers: {Authorization: 'Bearer ' + DECIDE_KEY}})
  .then(r => r.ok ? r.json() : r.json().then(p => Promise.reject(p.detail || r.statusText)))
  .then(render)
  .catch(why => { text('status', 'No personalization (' + why + '): the default shop.');
                  document.body.dataset.state = 'failed'; });

function text(id, value) { document.getElementById(id).textContent = value || ''; }

function render(d) {
  for (const [name, colour] of Object.entries(d.ui.theme))
    document.documentElement.style.setProperty('--' + name, colour);
  document.body.dataset.layout = d.ui.layout;
  document.body.dataset.variant = d.ui.name;
  const hero = d.ui.hero || {};
  text('hero-title', hero.title);
  text('hero-subtitle', hero.subtitle);
  const cta = document.getElementById('hero-cta');
  if (hero.cta_url) { cta.href = hero.cta_url; cta.textContent = hero.cta_label; }
  if (hero.image_url) document.getElementById('hero-image').src = hero.image_url;
  text('badge', d.ui.copy.badge);
  text('offer', d.offer && (d.offer.label + (d.offer.code ? ' · code ' + d.offer.code : '')));
  text('recs-title', d.ui.copy.recs_title);
  const list = document.getElementById('products');
  list.replaceChildren(...d.recommendations.map(r => {
    const li = document.createElement('li');
    li.textContent = r.title || r.item_id;
    const why = document.createElement('small');
    why.textContent = r.reason;
    li.append(why);
    return li;
  }));
  document.body.dataset.state = 'ready';
}
