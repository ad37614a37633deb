// The fleet dashboard of estate-gateway's hub: plain JavaScript, no framework, no build step,
// nothing from the network beyond the hub itself.
//
// Data: /api/estates (the fleet table), /api/alarms (active alarms of every estate),
// /api/league?period= (the league), and the live stream /api/events (SSE): every alarm or
// summary the hub stores refreshes the table and the alarm list at once; a reconnect fetches
// everything again, and a slow refresh every 5 s keeps ages and staleness current.
// Everything an estate sent is escaped before it reaches the page.
'use strict';

(() => {
  const DICT = {
    zh: {
      'title': '全部项目监控',
      'nav.estates': '项目总览', 'nav.alarms': '集中告警', 'nav.league': '红黑榜',
      'conn.ok': '实时', 'conn.wait': '连接中…', 'conn.down': '连接中断，正在重连',
      'sev.critical': '紧急', 'sev.major': '重要', 'sev.minor': '一般',
      'col.estate': '项目', 'col.district': '区域', 'col.company': '物业公司', 'col.intact': '完好率（实时）',
      'col.alarms': '活动告警', 'col.oldest': '最久未确认告警', 'col.response': '今日响应及时率',
      'col.heating': '供暖达标率（今日）', 'col.heard': '最后通信', 'col.rank': '排名', 'col.total': '总分',
      'col.grade': '等级', 'col.change': '较上期', 'col.prev': '上期', 'col.status': '状态',
      'col.severity': '级别', 'col.alarm': '告警', 'col.device': '设备', 'col.raised': '发生时间', 'col.age': '持续',
      'col.acked': '确认', 'all': '全部', 'stale': '数据过期', 'never': '从未', 'ago': '前', 'na': '—',
      'not_season': '非供暖季', 'estates.count': '个项目', 'estates.stale': '个数据过期', 'estates.none': '没有符合条件的项目',
      'al.title': '集中告警（最新在前）', 'al.recent': '最新告警', 'al.none': '当前没有活动告警', 'al.unacked': '未确认', 'al.acked': '已确认',
      'lg.kind': '周期类型', 'lg.period': '周期', 'lg.month': '月度', 'lg.quarter': '季度', 'lg.heating': '供暖季', 'lg.year': '年度',
      'lg.red': '红榜', 'lg.black': '黑榜', 'lg.empty': '（无）', 'lg.none': '该周期没有任何项目的考核结果',
      'lg.prev_period': '对比周期', 'lg.tie': '同分按此指标得分排序：',
      'status.ranked': '已排名', 'status.stale': '数据过期', 'status.no_score': '无得分', 'status.no_assessment': '未上报',
      'partial': '周期未结束', 'dashboard': '项目看板',
      'unit.s': '秒', 'unit.min': '分', 'unit.h': '小时', 'unit.d': '天',
    },
    en: {
      'title': 'Fleet of estates',
      'nav.estates': 'Estates', 'nav.alarms': 'Alarms', 'nav.league': 'League',
      'conn.ok': 'Live', 'conn.wait': 'Connecting…', 'conn.down': 'Disconnected, reconnecting',
      'sev.critical': 'Critical', 'sev.major': 'Major', 'sev.minor': 'Minor',
      'col.estate': 'Estate', 'col.district': 'District', 'col.company': 'Company', 'col.intact': 'Intactness now',
      'col.alarms': 'Active alarms', 'col.oldest': 'Oldest unacknowledged', 'col.response': 'Response today',
      'col.heating': 'Heating compliance today', 'col.heard': 'Last heard', 'col.rank': 'Rank', 'col.total': 'Total',
      'col.grade': 'Grade', 'col.change': 'Change', 'col.prev': 'Previous', 'col.status': 'Status',
      'col.severity': 'Severity', 'col.alarm': 'Alarm', 'col.device': 'Device', 'col.raised': 'Raised', 'col.age': 'Age',
      'col.acked': 'Acknowledged', 'all': 'All', 'stale': 'stale', 'never': 'never', 'ago': 'ago', 'na': '—',
      'not_season': 'out of season', 'estates.count': 'estates', 'estates.stale': 'stale', 'estates.none': 'No estate matches',
      'al.title': 'Alarms of all estates (newest first)', 'al.recent': 'Newest alarms', 'al.none': 'No active alarms', 'al.unacked': 'unacknowledged', 'al.acked': 'acknowledged',
      'lg.kind': 'Period type', 'lg.period': 'Period', 'lg.month': 'Month', 'lg.quarter': 'Quarter', 'lg.heating': 'Heating season', 'lg.year': 'Year',
      'lg.red': 'Red list', 'lg.black': 'Black list', 'lg.empty': '(none)', 'lg.none': 'No estate has a scorecard for this period',
      'lg.prev_period': 'compared with', 'lg.tie': 'Ties go to the higher score of ',
      'status.ranked': 'ranked', 'status.stale': 'stale', 'status.no_score': 'no score', 'status.no_assessment': 'none sent',
      'partial': 'period not over', 'dashboard': 'estate dashboard',
      'unit.s': 's', 'unit.min': 'min', 'unit.h': 'h', 'unit.d': 'd',
    },
  };
  const EN_GRADE = { '优秀': 'Excellent', '良好': 'Good', '合格': 'Pass', '不合格': 'Fail' };
  let lang = localStorage.getItem('estate.lang') === 'en' ? 'en' : 'zh';
  const t = (k) => (DICT[lang][k] ?? DICT.zh[k] ?? k);

  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const pct = (v) => (v == null ? t('na') : (v * 100).toFixed(2) + '%');
  const num = (v, d = 2) => (v == null ? t('na') : Number(v).toFixed(d));
  const TZ = 'Asia/Shanghai';
  const timeFmt = () => new Intl.DateTimeFormat(lang === 'en' ? 'en-GB' : 'zh-CN', {
    timeZone: TZ, month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
  });
  const when = (ms) => (ms == null ? t('never') : timeFmt().format(new Date(ms)));
  function dur(ms) {
    if (ms == null) return t('na');
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s}${t('unit.s')}`;
    if (s < 3600) return `${Math.floor(s / 60)}${t('unit.min')}${s % 60}${t('unit.s')}`;
    if (s < 86400) return `${Math.floor(s / 3600)}${t('unit.h')}${Math.floor((s % 3600) / 60)}${t('unit.min')}`;
    return `${Math.floor(s / 86400)}${t('unit.d')}${Math.floor((s % 86400) / 3600)}${t('unit.h')}`;
  }
  const SEVS = ['critical', 'major', 'minor'];
  const sevRank = (s) => { const i = SEVS.indexOf(s); return i < 0 ? SEVS.length : i; };

  // ---------------------------------------------------------------- state
  const state = {
    estates: null, // /api/estates
    alarms: null, // /api/alarms
    league: null, // /api/league of state.period
    period: null,
    sort: { key: 'alarms', dir: 'desc' },
    district: '', company: '',
    skew: 0, // hub time − browser time
    error: null,
  };
  async function getJson(path) {
    const r = await fetch(path, { cache: 'no-store' });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
  }
  const now = () => Date.now() + state.skew;

  async function refreshFleet() {
    try {
      const [e, a] = await Promise.all([getJson('/api/estates'), getJson('/api/alarms')]);
      state.estates = e;
      state.alarms = a;
      state.skew = e.ts - Date.now();
      state.error = null;
    } catch (err) {
      state.error = String(err.message || err);
    }
    render();
  }
  async function refreshLeague() {
    if (!state.period) return;
    const p = state.period;
    try {
      const l = await getJson('/api/league?period=' + encodeURIComponent(p));
      if (p === state.period) state.league = l;
      state.error = null;
    } catch (err) {
      state.error = String(err.message || err);
    }
    render();
  }
  // A fleet stores many messages a second (1,000 estates: 100 summaries/s): the page refetches
  // at most once a second, 100 ms after the first event it has not shown yet.
  let pending = null, lastRun = 0;
  function soon(f) {
    if (pending) return;
    const wait = Math.max(100, lastRun + 1000 - Date.now());
    pending = setTimeout(() => { pending = null; lastRun = Date.now(); f(); }, wait);
  }

  // ---------------------------------------------------------------- live
  let es = null;
  function setConn(st) {
    const el = document.getElementById('conn');
    el.className = 'conn conn-' + st;
    el.dataset.state = st;
    document.getElementById('conn-text').textContent = t('conn.' + st);
  }
  function connect() {
    setConn('wait');
    es = new EventSource('/api/events');
    es.onopen = () => { setConn('ok'); refreshFleet(); if (route().page === 'league') refreshLeague(); };
    es.onerror = () => setConn(es.readyState === EventSource.CLOSED ? 'down' : 'wait');
    const fleet = () => soon(refreshFleet);
    es.addEventListener('alarm', fleet);
    es.addEventListener('kpi', fleet);
    es.addEventListener('lagged', fleet);
    es.addEventListener('assessment', (ev) => {
      try {
        if (JSON.parse(ev.data).period === state.period) refreshLeague();
      } catch (_) { /* not ours to judge: the next refresh shows it */ }
    });
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
    });
  }

  // ---------------------------------------------------------------- routes
  function route() {
    const h = location.hash.replace(/^#\/?/, '').split('/');
    const page = ['estates', 'alarms', 'league'].includes(h[0]) ? h[0] : 'estates';
    return { page, arg: h[1] ? decodeURIComponent(h[1]) : null };
  }
  function parts() {
    const f = new Intl.DateTimeFormat('en-CA', { timeZone: TZ, year: 'numeric', month: '2-digit' }).formatToParts(new Date(now()));
    return { y: Number(f.find((p) => p.type === 'year').value), m: Number(f.find((p) => p.type === 'month').value) };
  }
  const kindOf = (p) => (/^heating-\d{4}$/.test(p) ? 'heating' : /^\d{4}Q[1-4]$/.test(p) ? 'quarter' : /^\d{4}-\d{2}$/.test(p) ? 'month' : /^\d{4}$/.test(p) ? 'year' : null);
  function periods(kind) {
    const { y, m } = parts();
    const out = [];
    if (kind === 'month') for (let i = 0; i < 24; i++) { const k = y * 12 + (m - 1) - i; out.push(`${Math.floor(k / 12)}-${String((k % 12) + 1).padStart(2, '0')}`); }
    if (kind === 'quarter') for (let i = 0; i < 8; i++) { const k = y * 4 + Math.floor((m - 1) / 3) - i; out.push(`${Math.floor(k / 4)}Q${(k % 4) + 1}`); }
    if (kind === 'heating') { const s = m >= 9 ? y : y - 1; for (let i = 0; i < 5; i++) out.push(`heating-${s - i}`); }
    if (kind === 'year') for (let i = 0; i < 5; i++) out.push(String(y - i));
    return out;
  }

  // ---------------------------------------------------------------- render
  function render() {
    const r = route();
    for (const p of ['estates', 'alarms', 'league']) document.getElementById('nav-' + p).classList.toggle('active', p === r.page);
    const active = state.alarms?.alarms?.length ?? 0;
    const badge = document.getElementById('alarm-count');
    badge.hidden = active === 0;
    badge.textContent = active;
    const view = document.getElementById('view');
    const err = state.error ? `<div class="banner error">${esc(state.error)}</div>` : '';
    if (r.page === 'estates') view.innerHTML = err + renderEstates() + `<section class="section"><h2>${t('al.recent')}</h2>${renderAlarms(10)}</section>`;
    else if (r.page === 'alarms') view.innerHTML = err + `<section class="section" id="alarms"><h2>${t('al.title')}</h2>${renderAlarms(Infinity)}</section>`;
    else view.innerHTML = err + renderLeague();
    bind();
  }

  const COLS = [
    { key: 'site', label: 'col.estate', val: (e) => e.name || e.site },
    { key: 'district', label: 'col.district', val: (e) => e.district || '' },
    { key: 'company', label: 'col.company', val: (e) => e.company || '' },
    { key: 'intactness', label: 'col.intact', val: (e) => e.intactness, num: true },
    { key: 'alarms', label: 'col.alarms', val: (e) => SEVS.reduce((a, s, i) => a + (e.active_alarms?.[s] ?? 0) * 1e6 ** (2 - i), 0) + (e.active_alarm_count ?? 0), num: true },
    { key: 'oldest', label: 'col.oldest', val: (e) => (e.oldest_unacknowledged ? now() - e.oldest_unacknowledged.raised_ts : null), num: true, left: true },
    { key: 'response', label: 'col.response', val: (e) => e.response_timely_day, num: true },
    { key: 'heating', label: 'col.heating', val: (e) => (e.heating_in_season ? e.heating_compliance_day : null), num: true },
    { key: 'heard', label: 'col.heard', val: (e) => e.last_heard_ts, num: true },
  ];
  function compare(a, b, col) {
    const x = col.val(a), y = col.val(b);
    if (x == null && y == null) return 0;
    if (x == null) return 1; // missing values last, whatever the direction
    if (y == null) return -1;
    const c = col.num ? x - y : String(x).localeCompare(String(y), 'zh-CN');
    return state.sort.dir === 'asc' ? c : -c;
  }
  function renderEstates() {
    if (!state.estates) return `<p class="muted">${t('conn.wait')}</p>`;
    const all = state.estates.estates;
    const opts = (k) => [...new Set(all.map((e) => e[k]).filter(Boolean))].sort();
    const select = (id, k, cur) => `<label>${t('col.' + k)} <select id="${id}"><option value="">${t('all')}</option>${
      opts(k).map((v) => `<option value="${esc(v)}"${v === cur ? ' selected' : ''}>${esc(v)}</option>`).join('')}</select></label>`;
    const rows = all.filter((e) => (!state.district || e.district === state.district) && (!state.company || e.company === state.company));
    const col = COLS.find((c) => c.key === state.sort.key) ?? COLS[0];
    rows.sort((a, b) => compare(a, b, col) || a.site.localeCompare(b.site));
    const stale = rows.filter((e) => e.stale).length;
    const head = COLS.map((c) => `<th class="sort${c.num && !c.left ? ' num' : ''}" data-key="${c.key}"${c.key === state.sort.key ? ` data-dir="${state.sort.dir}"` : ''}>${t(c.label)}</th>`).join('');
    const body = rows.map((e) => {
      const name = e.dashboard_url
        ? `<a class="estate-link" href="${esc(e.dashboard_url)}" target="_blank" rel="noopener" title="${t('dashboard')}">${esc(e.name || e.site)}</a>`
        : esc(e.name || e.site);
      const sevs = SEVS.filter((s) => e.active_alarms?.[s]).map((s) => `<span class="badge ${s}" data-sev="${s}" title="${t('sev.' + s)}">${t('sev.' + s)} ${e.active_alarms[s]}</span>`).join('');
      const o = e.oldest_unacknowledged;
      const oldest = o ? `<span class="sev sev-${esc(o.severity)}">${t('sev.' + o.severity)}</span> ${esc(o.device)} · ${dur(now() - o.raised_ts)}` : t('na');
      const heating = e.heating_in_season === false ? `<span class="muted">${t('not_season')}</span>` : pct(e.heating_compliance_day);
      return `<tr class="estate${e.stale ? ' stale' : ''}" data-site="${esc(e.site)}" data-stale="${e.stale}">
        <td data-col="site">${name}${e.name ? ` <span class="muted">${esc(e.site)}</span>` : ''}${e.stale ? `<span class="stale-tag">${t('stale')}</span>` : ''}</td>
        <td data-col="district">${esc(e.district ?? '')}</td><td data-col="company">${esc(e.company ?? '')}</td>
        <td class="num" data-col="intactness">${pct(e.intactness)}</td>
        <td class="num" data-col="alarms" data-count="${e.active_alarm_count ?? 0}"><span class="sevs">${sevs || '0'}</span></td>
        <td data-col="oldest">${oldest}</td>
        <td class="num" data-col="response">${pct(e.response_timely_day)}</td>
        <td class="num" data-col="heating">${heating}</td>
        <td class="num" data-col="heard">${e.last_heard_ts == null ? t('never') : dur(now() - e.last_heard_ts) + ' ' + t('ago')}</td></tr>`;
    }).join('');
    return `<section class="section" id="estates">
      <div class="filters">${select('f-district', 'district', state.district)} ${select('f-company', 'company', state.company)}
        <span class="muted" id="estate-count">${rows.length} ${t('estates.count')}${stale ? ` · ${stale} ${t('estates.stale')}` : ''}</span></div>
      <table id="estate-table"><thead><tr>${head}</tr></thead><tbody>${body || `<tr><td colspan="${COLS.length}" class="empty">${t('estates.none')}</td></tr>`}</tbody></table></section>`;
  }
  function renderAlarms(limit) {
    const list = (state.alarms?.alarms ?? []).slice().sort((a, b) => (b.raised_ts ?? b.ts) - (a.raised_ts ?? a.ts));
    if (!list.length) return `<p class="empty">${t('al.none')}</p>`;
    const names = Object.fromEntries((state.estates?.estates ?? []).map((e) => [e.site, e.name || e.site]));
    return `<table id="alarm-list"><thead><tr><th>${t('col.raised')}</th><th>${t('col.estate')}</th><th>${t('col.severity')}</th><th>${t('col.device')}</th><th>${t('col.alarm')}</th><th class="num">${t('col.age')}</th><th>${t('col.acked')}</th></tr></thead><tbody>${
      list.slice(0, limit).map((a) => `<tr class="alarm ${esc(a.severity)}" data-alarm-id="${esc(a.id)}" data-site="${esc(a.site)}">
        <td class="num">${when(a.raised_ts ?? a.ts)}</td><td>${esc(names[a.site] ?? a.site)}</td>
        <td><span class="sev sev-${esc(a.severity)}">${t('sev.' + a.severity)}</span></td><td>${esc(a.device)}</td>
        <td class="msg">${esc(a.message ?? a.rule)}</td><td class="num">${dur(now() - (a.raised_ts ?? a.ts))}</td>
        <td>${a.acknowledged ? `${t('al.acked')} · ${esc(a.acknowledged.by ?? '')}` : `<span class="s-bad">${t('al.unacked')}</span>`}</td></tr>`).join('')}</tbody></table>`;
  }
  // The tie-break KPI's label as a scorecard names it (its id in English or when none does).
  function tieLabel(l) {
    const k = l.rows.flatMap((r) => r.kpis).find((x) => x.name === l.tie_kpi);
    return lang === 'en' || !k?.label ? l.tie_kpi : k.label;
  }
  function renderLeague() {
    const kind = kindOf(state.period) ?? 'month';
    const kinds = ['month', 'quarter', 'heating', 'year'].map((k) => `<option value="${k}"${k === kind ? ' selected' : ''}>${t('lg.' + k)}</option>`).join('');
    const ps = periods(kind);
    if (state.period && !ps.includes(state.period)) ps.unshift(state.period);
    const popts = ps.map((p) => `<option value="${p}"${p === state.period ? ' selected' : ''}>${p}</option>`).join('');
    const l = state.league;
    let head = `<div class="league-head"><label>${t('lg.kind')} <select id="league-kind">${kinds}</select></label>
      <label>${t('lg.period')} <select id="league-period">${popts}</select></label>`;
    if (l && l.previous_period) head += `<span class="muted">${t('lg.prev_period')} ${esc(l.previous_period)} · ${t('lg.tie')}${esc(tieLabel(l))}</span>`;
    head += '</div>';
    if (!l || l.period !== state.period) return `<section class="section" id="league">${head}<p class="muted">${t('conn.wait')}</p></section>`;
    const label = (s) => { const r = l.rows.find((x) => x.site === s); return esc(r?.name || s); };
    const box = (cls, key, sites) => `<div class="list-box ${cls}" id="${cls}-list"><h2>${t(key)}</h2>${
      sites.length ? `<ol>${sites.map((s) => `<li data-site="${esc(s)}">${label(s)}</li>`).join('')}</ol>` : `<p class="muted">${t('lg.empty')}</p>`}</div>`;
    const kpiNames = [];
    for (const r of l.rows) for (const k of r.kpis) if (!kpiNames.some((x) => x.name === k.name)) kpiNames.push(k);
    const grade = (g) => (g == null ? t('na') : lang === 'en' ? EN_GRADE[g] ?? g : g);
    const rows = l.rows.map((r) => {
      const ch = r.change == null ? t('na') : `<span class="${r.change > 0 ? 'up' : r.change < 0 ? 'down' : ''}">${r.change > 0 ? '+' : ''}${num(r.change)}</span>`;
      const kp = kpiNames.map((k) => {
        const x = r.kpis.find((y) => y.name === k.name);
        return `<td class="num" data-kpi="${esc(k.name)}">${x && x.actual != null ? `${pct(x.actual)} <span class="muted">${num(x.score, 1)}</span>` : t('na')}</td>`;
      }).join('');
      const status = r.status === 'ranked' ? '' : `<span class="stale-tag">${t('status.' + r.status)}</span>`;
      return `<tr class="league-row${r.list ? ' list-' + r.list : ''}" data-site="${esc(r.site)}" data-rank="${r.rank ?? ''}" data-list="${r.list ?? ''}">
        <td class="num" data-col="rank">${r.rank ?? t('na')}</td><td>${esc(r.name || r.site)}${status}${r.partial ? ` <span class="muted">(${t('partial')})</span>` : ''}</td>
        <td class="num" data-col="total">${num(r.total)}</td><td class="grade">${esc(grade(r.grade))}</td>${kp}
        <td class="num">${num(r.previous_total)}${r.previous_rank ? ` <span class="muted">#${r.previous_rank}</span>` : ''}</td><td class="num" data-col="change">${ch}</td></tr>`;
    }).join('');
    const kh = kpiNames.map((k) => `<th class="num">${esc(lang === 'en' ? k.name : k.label || k.name)}</th>`).join('');
    const table = l.rows.length
      ? `<table id="league-table"><thead><tr><th class="num">${t('col.rank')}</th><th>${t('col.estate')}</th><th class="num">${t('col.total')}</th><th>${t('col.grade')}</th>${kh}<th class="num">${t('col.prev')}</th><th class="num">${t('col.change')}</th></tr></thead><tbody>${rows}</tbody></table>`
      : `<p class="empty">${t('lg.none')}</p>`;
    return `<section class="section" id="league" data-period="${esc(l.period)}">${head}<div class="lists">${box('red', 'lg.red', l.red)}${box('black', 'lg.black', l.black)}</div>${table}</section>`;
  }
  function bind() {
    for (const th of document.querySelectorAll('th.sort')) {
      th.onclick = () => {
        const k = th.dataset.key;
        state.sort = { key: k, dir: state.sort.key === k && state.sort.dir === 'desc' ? 'asc' : 'desc' };
        render();
      };
    }
    const d = document.getElementById('f-district');
    if (d) d.onchange = () => { state.district = d.value; render(); };
    const c = document.getElementById('f-company');
    if (c) c.onchange = () => { state.company = c.value; render(); };
    const k = document.getElementById('league-kind');
    if (k) k.onchange = () => { location.hash = '#/league/' + periods(k.value)[0]; };
    const p = document.getElementById('league-period');
    if (p) p.onchange = () => { location.hash = '#/league/' + p.value; };
  }
  function onRoute() {
    const r = route();
    if (r.page === 'league') {
      const p = r.arg && kindOf(r.arg) ? r.arg : periods('month')[0];
      if (p !== state.period) { state.period = p; state.league = null; }
      refreshLeague();
    }
    render();
  }
  function applyLang() {
    document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN';
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    document.getElementById('lang').textContent = lang === 'en' ? '中文' : 'EN';
    document.title = t('title') + ' · estate-gateway hub';
    setConn(document.getElementById('conn').dataset.state || 'wait');
  }
  document.getElementById('lang').onclick = () => {
    lang = lang === 'en' ? 'zh' : 'en';
    localStorage.setItem('estate.lang', lang);
    applyLang();
    render();
  };
  setInterval(() => { document.getElementById('clock').textContent = when(now()); }, 1000);
  setInterval(refreshFleet, 5000);
  window.addEventListener('hashchange', onRoute);
  applyLang();
  onRoute();
  connect();
})();
