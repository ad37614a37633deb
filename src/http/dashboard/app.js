// The built-in dashboard of estate-gateway: plain JavaScript, no framework, no build step, no
// network beyond the gateway itself (control rooms are often offline).
//
// Data: /api/kpi (figures, refreshed by the gateway every assessment.kpi_interval),
// /api/assessment (targets), /api/alarms, /api/devices, /api/devices/{id}[/figures], /api/report, and
// the live stream /api/events (SSE): alarm and state events update the page at once; on
// `lagged` or on (re)connect the lists are fetched again, so a gateway restart is survived.
// Everything a device or an operator named is escaped before it reaches the page.
'use strict';

(() => {
  // ---------------------------------------------------------------- language
  const DICT = {
    zh: {
      'title': '物业监控中心',
      'nav.overview': '总览', 'nav.alarms': '告警', 'nav.devices': '设备', 'nav.heating': '供暖', 'nav.assessment': '考核',
      'conn.ok': '实时', 'conn.wait': '连接中…', 'conn.down': '连接中断，正在重连',
      'state.intact': '完好', 'state.fault': '故障', 'state.offline': '离线', 'state.maintenance': '检修',
      'sev.critical': '紧急', 'sev.major': '重要', 'sev.minor': '一般',
      'ov.intact_now': '设施设备完好率（实时）', 'ov.intact_month': '完好率（本月）',
      'ov.response': '响应及时率（本月）', 'ov.heating': '供暖达标率（本月）', 'ov.active': '活动告警',
      'ov.arrival': '到场及时率（本月）', 'ov.repair': '修复及时率（本月）', 'ov.reported': '仅报告',
      'ov.by_category': '分类完好率', 'ov.by_building': '分楼栋完好率', 'ov.response_detail': '告警处理及时率（本月）：响应、到场、修复',
      'ov.computing': '考核数据计算中，几秒后刷新…', 'ov.data_at': '数据时间', 'ov.devices': '台设备完好',
      'ov.counted': '条计入', 'ov.not_season': '非供暖季', 'ov.coverage': '覆盖率', 'ov.target': '目标',
      'ov.no_alarms': '无活动告警', 'ov.unacked': '未确认',
      'col.category': '类别', 'col.building': '楼栋', 'col.now': '实时', 'col.intact_total': '完好/总数',
      'col.today': '今日', 'col.month': '本月', 'col.target': '目标', 'col.count': '计入', 'col.timely': '响应及时率',
      'col.arrival': '到场及时率', 'col.repair': '修复及时率',
      'col.p50': '响应中位数', 'col.p90': 'P90 响应', 'col.max': '最长响应', 'col.transient': '自行消除', 'col.pending': '未到时限',
      'col.severity': '级别', 'col.alarm': '告警', 'col.raised': '发生时间', 'col.age': '持续', 'col.deadline': '响应时限',
      'col.handling': '处理', 'col.cleared': '消除时间', 'col.response': '响应用时', 'col.restore': '恢复用时',
      'col.signal': '信号', 'col.value': '数值', 'col.start': '开始', 'col.end': '结束', 'col.reason': '原因', 'col.by': '操作人',
      'col.compliance': '达标率', 'col.coverage': '覆盖率', 'col.avg': '平均室温', 'col.sensors': '传感器',
      'col.device': '设备', 'col.supply': '供水', 'col.return': '回水', 'col.dt': '温差 ΔT', 'col.pressure': '压力',
      'col.pump': '循环泵', 'col.state': '状态', 'col.kpi': '指标', 'col.actual': '实际', 'col.weight': '权重', 'col.score': '得分',
      'all': '全部', 'site': '全站', 'na': 'n/a',
      'al.active': '活动告警', 'al.cleared': '最近消除', 'al.none': '当前没有活动告警', 'al.none_cleared': '最近没有消除的告警',
      'al.left': '剩余', 'al.overdue': '已超时', 'al.acked': '已确认', 'al.on_site': '已到场', 'al.late': '超时',
      'al.escalated': '已升级 {n} 次', 'al.step': '第{n}级',
      'btn.ack': '确认', 'btn.on_site': '到场',
      'dlg.ack': '确认告警', 'dlg.on_site': '报告到场', 'dlg.name': '值班员姓名', 'dlg.token': 'API 令牌',
      'dlg.cancel': '取消', 'dlg.ok': '确定', 'err.name': '请填写值班员姓名。', 'err.token': '请输入 API 令牌。',
      'err.401': '令牌缺失或错误，请重新输入 API 令牌。', 'err.net': '无法连接网关：',
      'dev.search': '搜索名称、编号、楼栋', 'dev.shown': '台设备', 'dev.back': '← 设备列表', 'dev.values': '最新数值',
      'dev.alarms': '告警记录', 'dev.active_alarms': '活动告警', 'dev.maintenance': '检修窗口', 'dev.no_windows': '无检修窗口',
      'dev.no_alarms': '无告警记录', 'dev.since': '状态起始', 'dev.last_seen': '最后上报', 'dev.never': '从未',
      'dev.source': '接入', 'dev.not_found': '没有这台设备', 'dev.none': '没有符合条件的设备',
      'dev.figures': '本月指标', 'fig.rate': '完好率', 'fig.intact': '完好', 'fig.fault': '故障', 'fig.offline': '离线',
      'fig.maintenance': '检修', 'fig.faults': '故障次数', 'fig.alarms': '告警数', 'fig.mttr': '平均修复时长',
      'ht.by_building': '分楼栋室温达标率（本月）', 'ht.hist': '室温分布（各传感器最新读数）', 'ht.min': '达标线',
      'ht.loops': '供暖回路', 'ht.no_sensors': '暂无室温读数', 'ht.reporting': '个传感器有读数', 'ht.below': '低于达标线',
      'ht.no_buildings': '本月暂无达标率数据', 'ht.no_loops': '没有供暖回路', 'pump.on': '运行', 'pump.off': '停止',
      'ht.not_season': '当前为非供暖季，达标率只在供暖季计算。',
      'as.month': '本月', 'as.quarter': '本季度', 'as.total': '总分', 'as.grade': '等级',
      'as.partial': '周期未结束，数据截至', 'as.grades': '等级划分', 'as.loading': '计算中…', 'as.rules': '未达目标时每差 1 个百分点扣',
      'as.points': '分',
      'unit.s': '秒', 'unit.min': '分', 'unit.h': '小时', 'unit.d': '天',
    },
    en: {
      'title': 'Estate control room',
      'nav.overview': 'Overview', 'nav.alarms': 'Alarms', 'nav.devices': 'Devices', 'nav.heating': 'Heating', 'nav.assessment': 'Assessment',
      'conn.ok': 'Live', 'conn.wait': 'Connecting…', 'conn.down': 'Disconnected, reconnecting',
      'state.intact': 'Intact', 'state.fault': 'Fault', 'state.offline': 'Offline', 'state.maintenance': 'Maintenance',
      'sev.critical': 'Critical', 'sev.major': 'Major', 'sev.minor': 'Minor',
      'ov.intact_now': 'Intactness now', 'ov.intact_month': 'Intactness, month to date',
      'ov.response': 'Response timeliness (month)', 'ov.heating': 'Heating compliance (month)', 'ov.active': 'Active alarms',
      'ov.arrival': 'Arrival timeliness (month)', 'ov.repair': 'Repair timeliness (month)', 'ov.reported': 'reported only',
      'ov.by_category': 'Intactness by category', 'ov.by_building': 'Intactness by building', 'ov.response_detail': 'Alarm handling timeliness (month): response, arrival, repair',
      'ov.computing': 'The figures are being computed; refreshing in a few seconds…', 'ov.data_at': 'Figures as of', 'ov.devices': 'devices intact',
      'ov.counted': 'counted', 'ov.not_season': 'Outside the heating season', 'ov.coverage': 'coverage', 'ov.target': 'target',
      'ov.no_alarms': 'No active alarms', 'ov.unacked': 'unacknowledged',
      'col.category': 'Category', 'col.building': 'Building', 'col.now': 'Now', 'col.intact_total': 'Intact/total',
      'col.today': 'Today', 'col.month': 'Month', 'col.target': 'Target', 'col.count': 'Counted', 'col.timely': 'Response',
      'col.arrival': 'Arrival', 'col.repair': 'Repair',
      'col.p50': 'Median response', 'col.p90': 'P90 response', 'col.max': 'Longest', 'col.transient': 'Transient', 'col.pending': 'Pending',
      'col.severity': 'Severity', 'col.alarm': 'Alarm', 'col.raised': 'Raised', 'col.age': 'Age', 'col.deadline': 'Response target',
      'col.handling': 'Handling', 'col.cleared': 'Cleared', 'col.response': 'Response', 'col.restore': 'Restore',
      'col.signal': 'Signal', 'col.value': 'Value', 'col.start': 'Start', 'col.end': 'End', 'col.reason': 'Reason', 'col.by': 'By',
      'col.compliance': 'Compliance', 'col.coverage': 'Coverage', 'col.avg': 'Mean indoor', 'col.sensors': 'Sensors',
      'col.device': 'Device', 'col.supply': 'Supply', 'col.return': 'Return', 'col.dt': 'ΔT', 'col.pressure': 'Pressure',
      'col.pump': 'Pump', 'col.state': 'State', 'col.kpi': 'KPI', 'col.actual': 'Actual', 'col.weight': 'Weight', 'col.score': 'Score',
      'all': 'All', 'site': 'Whole site', 'na': 'n/a',
      'al.active': 'Active alarms', 'al.cleared': 'Recently cleared', 'al.none': 'No active alarms', 'al.none_cleared': 'Nothing cleared recently',
      'al.left': 'left', 'al.overdue': 'overdue', 'al.acked': 'Acknowledged', 'al.on_site': 'On site', 'al.late': 'late',
      'al.escalated': 'Escalated {n}×', 'al.step': 'step {n}',
      'btn.ack': 'Acknowledge', 'btn.on_site': 'On site',
      'dlg.ack': 'Acknowledge alarm', 'dlg.on_site': 'Report on site', 'dlg.name': 'Operator name', 'dlg.token': 'API token',
      'dlg.cancel': 'Cancel', 'dlg.ok': 'OK', 'err.name': 'Enter the operator\'s name.', 'err.token': 'Enter the API token.',
      'err.401': 'The token is missing or wrong; enter the API token again.', 'err.net': 'Cannot reach the gateway: ',
      'dev.search': 'Search name, id, building', 'dev.shown': 'devices', 'dev.back': '← Devices', 'dev.values': 'Latest values',
      'dev.alarms': 'Alarm history', 'dev.active_alarms': 'Active alarms', 'dev.maintenance': 'Maintenance windows', 'dev.no_windows': 'No maintenance windows',
      'dev.no_alarms': 'No alarms', 'dev.since': 'In this state since', 'dev.last_seen': 'Last report', 'dev.never': 'never',
      'dev.source': 'Source', 'dev.not_found': 'No such device', 'dev.none': 'No device matches',
      'dev.figures': 'This month', 'fig.rate': 'Intactness', 'fig.intact': 'Intact', 'fig.fault': 'Fault', 'fig.offline': 'Offline',
      'fig.maintenance': 'Maintenance', 'fig.faults': 'Faults', 'fig.alarms': 'Alarms', 'fig.mttr': 'MTTR',
      'ht.by_building': 'Indoor compliance by building (month)', 'ht.hist': 'Indoor temperatures (latest reading of each sensor)', 'ht.min': 'Minimum',
      'ht.loops': 'Heating loops', 'ht.no_sensors': 'No indoor readings yet', 'ht.reporting': 'sensors reporting', 'ht.below': 'below the minimum',
      'ht.no_buildings': 'No compliance figures this month yet', 'ht.no_loops': 'No heating loops', 'pump.on': 'running', 'pump.off': 'stopped',
      'ht.not_season': 'Outside the heating season: compliance is only computed in season.',
      'as.month': 'This month', 'as.quarter': 'This quarter', 'as.total': 'Total', 'as.grade': 'Grade',
      'as.partial': 'Period not over; figures up to', 'as.grades': 'Grade bands', 'as.loading': 'Computing…', 'as.rules': 'Short of target: points lost per percentage point',
      'as.points': 'points',
      'unit.s': 's', 'unit.min': 'min', 'unit.h': 'h', 'unit.d': 'd',
    },
  };
  // English names of the built-in categories, KPIs and grades (Chinese ones come from the gateway).
  const EN_CATEGORY = {
    access_gate: 'Access gates', elevator: 'Elevators', heating_loop: 'Heating loops',
    indoor_sensor: 'Indoor sensors', fire_equipment: 'Fire equipment',
  };
  const EN_KPI = {
    fire_intactness: 'Fire equipment intactness', electromechanical_intactness: 'Electromechanical intactness',
    response_timeliness: 'Response timeliness', heating_compliance: 'Heating compliance',
    repair_timeliness: 'Repair timeliness', arrival_timeliness: 'Arrival timeliness',
  };
  const EN_GRADE = { '优秀': 'Excellent', '良好': 'Good', '合格': 'Pass', '不合格': 'Fail' };

  let lang = localStorage.getItem('estate.lang') === 'en' ? 'en' : 'zh';
  const t = (k) => (DICT[lang][k] ?? DICT.zh[k] ?? k);

  // ---------------------------------------------------------------- state
  const S = {
    assessment: null,
    kpi: null, kpiError: null,
    alarms: new Map(), alarmsLoaded: false,
    devices: [], devicesLoaded: false, devicesError: null,
    heating: { sensors: [], loops: [], error: null, loaded: false },
    device: null, deviceAlarms: [], deviceError: null, deviceKey: null, deviceFigures: null,
    reports: { month: null, quarter: null },
    offset: 0,               // gateway clock − browser clock, ms
    fresh: new Set(),        // alarm ids raised while the page was open (highlighted once)
    rowErrors: new Map(),    // alarm id → last refused step's message
    devFilter: { state: '', q: '' },
    timers: {},
  };
  const now = () => Date.now() + S.offset;
  const SEV_ORDER = { critical: 0, major: 1, minor: 2 };

  // ---------------------------------------------------------------- formatting
  const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const pct = (v) => (v == null ? '—' : (v * 100).toFixed(2) + '%');
  const int = (v) => (v == null ? '—' : String(v));
  const tz = () => S.assessment?.heating?.time_zone || undefined;
  function fmtTime(ms, withDate = true) {
    if (ms == null) return '—';
    const o = { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false, timeZone: tz() };
    if (withDate) { o.month = '2-digit'; o.day = '2-digit'; }
    return new Intl.DateTimeFormat(lang === 'en' ? 'en-GB' : 'zh-CN', o).format(new Date(ms));
  }
  function fmtDur(s) {
    if (s == null) return '—';
    s = Math.max(0, Math.round(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const u = (n, k) => `${n}${lang === 'en' ? ' ' : ''}${t(k)}`;
    if (d) return `${u(d, 'unit.d')} ${u(h, 'unit.h')}`;
    if (h) return `${u(h, 'unit.h')} ${u(m, 'unit.min')}`;
    if (m) return `${u(m, 'unit.min')} ${u(sec, 'unit.s')}`;
    return u(sec, 'unit.s');
  }
  function clockDur(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const p = (n) => String(n).padStart(2, '0');
    return (d ? `${d}${lang === 'en' ? 'd ' : '天 '}` : '') + (h || d ? `${p(h)}:` : '') + `${p(m)}:${p(sec)}`;
  }
  function fmtValue(v, unit) {
    if (v == null) return '—';
    if (typeof v === 'boolean') return v ? '✔ true' : '✘ false';
    if (typeof v === 'number' && !Number.isInteger(v)) v = Math.round(v * 100) / 100;
    return esc(v) + (unit ? ` <span class="muted">${esc(unit)}</span>` : '');
  }
  const catLabel = (c) => (lang === 'en' ? (EN_CATEGORY[c] || c) : (S.assessment?.categories?.[c] || c));
  const stateLabel = (s) => t('state.' + s);
  const stateHtml = (s) => `<span class="st st-${esc(s)}">${esc(stateLabel(s))}</span>`;
  const sevHtml = (s) => `<span class="sev sev-${esc(s)}">${esc(t('sev.' + s))}</span>`;
  const kpiLabel = (k) => (lang === 'en' ? (EN_KPI[k.name] || k.name) : (k.label || k.name));
  const gradeLabel = (g) => (g == null ? t('na') : (lang === 'en' ? `${EN_GRADE[g] || g}` : g));
  // green at or above target, amber within 2 points below it, red further below.
  function status(v, target) {
    if (v == null || target == null) return 'none';
    if (v >= target - 1e-9) return 'ok';
    if (v >= target - 0.02) return 'warn';
    return 'bad';
  }
  const statusClass = (st) => ({ ok: 's-ok', warn: 's-warn', bad: 's-bad' }[st] || 's-none');
  // The figure of /api/kpi at `path`, shown so that the browser test can compare it with the API.
  const kv = (path, fmt, cls = '') => {
    let v = S.kpi; for (const p of path) v = v == null ? undefined : v[p];
    const text = fmt === 'pct' ? pct(v) : int(v);
    return `<span class="${cls}" data-kpi="${esc(JSON.stringify(path))}" data-fmt="${fmt}">${esc(text)}</span>`;
  };
  function bar(v, st) {
    const w = v == null ? 0 : Math.max(0, Math.min(100, v * 100));
    return `<div class="bar ${st === 'ok' ? '' : st}"><i style="width:${w.toFixed(1)}%"></i></div>`;
  }

  // Targets of /api/assessment: which KPI grades a category, response, arrival, repair, heating.
  const STEPS = ['response', 'arrival', 'repair'];
  function targetOf(kind, category) {
    const kpis = S.assessment?.kpis || [];
    for (const k of kpis) {
      if (k.figure.kind !== kind) continue;
      if (kind === 'heating') return k.target;
      const cats = k.figure.categories || [];
      if (STEPS.includes(kind) && !k.figure.severity && cats.length === 0) return k.target;
      if (kind === 'intactness' && !k.figure.building && (cats.length === 0 || (category && cats.includes(category)))) return k.target;
    }
    return null;
  }
  // Whether the site-wide KPI of a step is weighted (arrival is reported only by default).
  const weighted = (kind) => (S.assessment?.kpis || []).some((k) => k.figure.kind === kind && !(k.figure.categories || []).length && !k.figure.severity && k.weight > 0);
  const minIntactTarget = () => {
    const ts = (S.assessment?.kpis || []).filter((k) => k.figure.kind === 'intactness').map((k) => k.target);
    return ts.length ? Math.min(...ts) : null;
  };

  // ---------------------------------------------------------------- fetching
  async function api(path, opts = {}) {
    let r;
    try {
      r = await fetch(path, { cache: 'no-store', ...opts });
    } catch (e) {
      return { ok: false, status: 0, error: t('err.net') + e.message };
    }
    const date = Date.parse(r.headers.get('date') || '');
    if (!Number.isNaN(date)) {
      const off = date + 500 - Date.now();
      // The Date header has whole seconds: only a real skew is corrected.
      S.offset = Math.abs(off) > 2000 ? off : 0;
    }
    let body = null;
    try { body = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok) return { ok: false, status: r.status, error: body?.error || `HTTP ${r.status}`, body };
    return { ok: true, status: r.status, body };
  }

  async function loadAssessment() {
    const r = await api('/api/assessment');
    if (r.ok) {
      S.assessment = r.body;
      document.getElementById('site').textContent = r.body.site;
    }
  }
  async function loadKpi() {
    const r = await api('/api/kpi');
    if (r.ok) { S.kpi = r.body; S.kpiError = null; } else { S.kpiError = r.error; }
    if (route().page === 'overview' || route().page === 'heating') render();
  }
  const progress = (a) => (a.acknowledged ? 1 : 0) + (a.on_site ? 1 : 0) + (a.cleared_ts != null ? 2 : 0);
  async function loadAlarms() {
    const started = Date.now();
    const r = await api('/api/alarms?limit=5000');
    if (!r.ok) return;
    const next = new Map(r.body.map((a) => [a.id, a]));
    // Events that arrived while the list was on its way are newer than it.
    for (const [id, a] of S.alarms) {
      if ((a._at || 0) < started) continue;
      const b = next.get(id);
      if (!b || progress(a) > progress(b)) next.set(id, a);
    }
    S.alarms = next;
    S.alarmsLoaded = true;
    renderSoon();
  }
  async function loadDevices() {
    const r = await api('/api/devices');
    if (r.ok) { S.devices = r.body; S.devicesLoaded = true; S.devicesError = null; } else { S.devicesError = r.error; }
    renderSoon();
  }
  async function loadHeating() {
    const [s, l] = await Promise.all([
      api('/api/devices?values=true&category=indoor_sensor'),
      api('/api/devices?values=true&category=heating_loop'),
    ]);
    S.heating = {
      sensors: s.ok ? s.body : [], loops: l.ok ? l.body : [], loaded: true,
      error: !s.ok && s.status !== 400 ? s.error : (!l.ok && l.status !== 400 ? l.error : null),
    };
    if (route().page === 'heating') render();
  }
  async function loadDevice(site, id) {
    const key = site + '\u0000' + id;
    const q = `?site=${encodeURIComponent(site)}`;
    const [d, a, f] = await Promise.all([
      api(`/api/devices/${encodeURIComponent(id)}${q}`),
      api(`/api/alarms?device=${encodeURIComponent(id)}&site=${encodeURIComponent(site)}&limit=200`),
      api(`/api/devices/${encodeURIComponent(id)}/figures${q}`),
    ]);
    const rt = route();
    if (rt.page !== 'device' || rt.site + '\u0000' + rt.id !== key) return;
    S.deviceKey = key;
    S.device = d.ok ? d.body : null;
    S.deviceError = d.ok ? null : d.error;
    S.deviceAlarms = a.ok ? a.body : [];
    S.deviceFigures = f.ok ? f.body : null;
    render();
  }
  async function loadReports() {
    const [m, q] = await Promise.all([api('/api/report?period=month'), api('/api/report?period=quarter')]);
    S.reports = { month: m, quarter: q };
    if (route().page === 'assessment') render();
  }
  function refetchAll() {
    loadKpi(); loadAlarms(); loadDevices();
    const rt = route();
    if (rt.page === 'heating') loadHeating();
    if (rt.page === 'device') loadDevice(rt.site, rt.id);
    if (rt.page === 'assessment') loadReports();
  }

  // ---------------------------------------------------------------- live stream
  let es = null, retry = 1000;
  function setConn(st) {
    const el = document.getElementById('conn');
    el.className = 'conn conn-' + st;
    el.dataset.state = st;
    document.getElementById('conn-text').textContent = t('conn.' + st);
  }
  function connect() {
    setConn(S.connState = 'wait');
    es = new EventSource('/api/events');
    es.onopen = () => { retry = 1000; setConn(S.connState = 'ok'); refetchAll(); };
    es.onerror = () => {
      setConn(S.connState = 'down');
      // The browser retries by itself after a dropped stream, but not after an error answer
      // (a proxy's 502 while the gateway restarts): then it is our turn, with backoff.
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 15000);
      }
    };
    es.addEventListener('alarm', (m) => {
      let a; try { a = JSON.parse(m.data); } catch (_) { return; }
      const old = S.alarms.get(a.id);
      if (old && progress(old) > progress(a)) return;
      delete a.type;
      a._at = Date.now();
      S.alarms.set(a.id, a);
      if (a.event === 'raised') S.fresh.add(a.id);
      const rt = route();
      if (rt.page === 'device' && S.device && S.device.id === a.device && S.device.site === a.site) deviceSoon();
      renderSoon();
    });
    es.addEventListener('state', (m) => {
      let s; try { s = JSON.parse(m.data); } catch (_) { return; }
      const d = S.devices.find((x) => x.id === s.device && x.site === s.site);
      if (d) { d.state = s.state; d.since_ts = s.ts; }
      const rt = route();
      if (rt.page === 'device' && S.device && S.device.id === s.device && S.device.site === s.site) deviceSoon();
      renderSoon();
    });
    es.addEventListener('maintenance', () => { if (route().page === 'device') deviceSoon(); });
    es.addEventListener('lagged', () => refetchAll());
  }
  function deviceSoon() {
    clearTimeout(S.timers.device);
    S.timers.device = setTimeout(() => { const rt = route(); if (rt.page === 'device') loadDevice(rt.site, rt.id); }, 300);
  }

  // ---------------------------------------------------------------- routing
  function route() {
    const h = location.hash.replace(/^#\/?/, '');
    const parts = h.split('/').map((p) => { try { return decodeURIComponent(p); } catch (_) { return p; } });
    if (parts[0] === 'device' && parts.length >= 3) return { page: 'device', site: parts[1], id: parts.slice(2).join('/') };
    const page = ['overview', 'alarms', 'devices', 'heating', 'assessment'].includes(parts[0]) ? parts[0] : 'overview';
    return { page };
  }
  const deviceHref = (site, id) => `#/device/${encodeURIComponent(site)}/${encodeURIComponent(id)}`;
  function onRoute() {
    const rt = route();
    for (const a of document.querySelectorAll('nav a')) {
      const p = a.id.replace('nav-', '');
      a.classList.toggle('active', p === rt.page || (rt.page === 'device' && p === 'devices'));
    }
    document.getElementById('view').innerHTML = '';
    if (rt.page === 'heating') loadHeating();
    if (rt.page === 'assessment') loadReports();
    if (rt.page === 'device') { S.device = null; S.deviceError = null; loadDevice(rt.site, rt.id); }
    render();
    window.scrollTo(0, 0);
  }

  // ---------------------------------------------------------------- rendering
  let renderTimer = null;
  function renderSoon() {
    if (renderTimer) return;
    renderTimer = setTimeout(() => { renderTimer = null; render(); }, 150);
  }
  function render() {
    const rt = route();
    const view = document.getElementById('view');
    document.documentElement.lang = lang === 'en' ? 'en' : 'zh-CN';
    renderBadge();
    switch (rt.page) {
      case 'alarms': view.innerHTML = alarmsPage(); break;
      case 'devices': renderDevices(view); break;
      case 'device': view.innerHTML = devicePage(); break;
      case 'heating': view.innerHTML = heatingPage(); break;
      case 'assessment': view.innerHTML = assessmentPage(); break;
      default: view.innerHTML = overviewPage();
    }
    tick();
  }
  const activeAlarms = () => [...S.alarms.values()].filter((a) => a.active)
    .sort((a, b) => (SEV_ORDER[a.severity] ?? 9) - (SEV_ORDER[b.severity] ?? 9) || a.raised_ts - b.raised_ts || (a.id < b.id ? -1 : 1));
  function renderBadge() {
    const act = activeAlarms();
    const b = document.getElementById('alarm-count');
    b.hidden = act.length === 0;
    b.textContent = act.length;
    b.className = 'badge ' + (act[0]?.severity || '');
  }

  // ----- overview
  function overviewPage() {
    const k = S.kpi;
    if (!k) {
      return `<section id="overview"><div class="banner">${esc(S.kpiError ? t('ov.computing') : t('ov.computing'))}</div></section>`;
    }
    const it = k.intactness;
    const siteT = minIntactTarget();
    const nowSt = status(it.instant, siteT), monthSt = status(it.rate_month, siteT);
    const resp = k.response.month;
    const respT = targetOf('response');
    const respSt = status(resp.timely_rate, respT);
    // Arrival and repair (DESIGN §4): the same rule over the other two steps.
    const arr = k.arrival?.month || {}, rep = k.repair?.month || {};
    const arrT = targetOf('arrival'), repT = targetOf('repair');
    const h = k.heating;
    const heatT = targetOf('heating');
    const heatSt = h.in_season ? status(h.compliance_month, heatT) : 'none';
    const act = activeAlarms();
    const unacked = act.filter((a) => !a.acknowledged).length;
    const bySev = (s) => act.filter((a) => a.severity === s).length;
    const tgt = (v) => (v == null ? '' : ` · ${t('ov.target')} ${pct(v)}`);
    const tile = (cls, label, value, sub, id) => `<div class="tile ${cls}" id="${id}"><div class="label">${esc(label)}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
    let out = `<section id="overview" data-kpi-ts="${esc(k.ts)}">`;
    out += '<div class="tiles">';
    out += tile(nowSt, t('ov.intact_now'), kv(['intactness', 'instant'], 'pct'),
      `${kv(['intactness', 'intact'], 'int')} / ${kv(['intactness', 'total'], 'int')} ${esc(t('ov.devices'))}${esc(tgt(siteT))}`, 'tile-now');
    out += tile(monthSt, t('ov.intact_month'), kv(['intactness', 'rate_month'], 'pct'),
      `${esc(t('col.today'))} ${kv(['intactness', 'rate_day'], 'pct')}${esc(tgt(siteT))}`, 'tile-month');
    out += tile(respSt, t('ov.response'), kv(['response', 'month', 'timely_rate'], 'pct'),
      `${kv(['response', 'month', 'count'], 'int')} ${esc(t('ov.counted'))}${esc(tgt(respT))}`, 'tile-response');
    const stepTile = (step, label, r, tg, id) => tile(status(r.timely_rate, tg), label, kv([step, 'month', 'timely_rate'], 'pct'),
      `${kv([step, 'month', 'count'], 'int')} ${esc(t('ov.counted'))}${esc(tgt(tg))}${S.assessment && !weighted(step) ? ' · ' + esc(t('ov.reported')) : ''}`, id);
    out += stepTile('arrival', t('ov.arrival'), arr, arrT, 'tile-arrival');
    out += stepTile('repair', t('ov.repair'), rep, repT, 'tile-repair');
    out += h.in_season
      ? tile(heatSt, t('ov.heating'), kv(['heating', 'compliance_month'], 'pct'),
        `${esc(t('ov.coverage'))} ${kv(['heating', 'coverage_month'], 'pct')}${esc(tgt(heatT))}`, 'tile-heating')
      : tile('none', t('ov.heating'), `<span class="s-none">${esc(t('ov.not_season'))}</span>`, '&nbsp;', 'tile-heating');
    out += tile(act.length ? (bySev('critical') ? 'bad' : 'warn') : 'ok', t('ov.active'),
      `<a href="#/alarms" style="color:inherit">${act.length}</a>`,
      act.length ? ['critical', 'major', 'minor'].filter(bySev).map((s) => `${esc(t('sev.' + s))} ${bySev(s)}`).join(' · ') + ` · ${esc(t('ov.unacked'))} ${unacked}` : esc(t('ov.no_alarms')), 'tile-alarms');
    out += '</div>';

    // Per category: now, today, month against the KPI that grades it.
    const cats = Object.keys(it.by_category || {});
    out += '<div class="grid cols-2 section"><div class="panel"><h2>' + esc(t('ov.by_category')) + '</h2><table id="by-category"><thead><tr>'
      + `<th>${esc(t('col.category'))}</th><th class="num">${esc(t('col.intact_total'))}</th><th class="num">${esc(t('col.now'))}</th><th class="num">${esc(t('col.today'))}</th><th class="num">${esc(t('col.month'))}</th><th class="num">${esc(t('col.target'))}</th><th></th>`
      + '</tr></thead><tbody>';
    for (const c of cats) {
      const r = it.by_category[c];
      const tg = targetOf('intactness', c);
      const sn = status(r.instant, tg), sm = status(r.rate_month, tg);
      out += `<tr data-category="${esc(c)}"><td>${esc(catLabel(c))}</td>`
        + `<td class="num">${kv(['intactness', 'by_category', c, 'intact'], 'int')}/${kv(['intactness', 'by_category', c, 'total'], 'int')}</td>`
        + `<td class="num">${kv(['intactness', 'by_category', c, 'instant'], 'pct', statusClass(sn))}</td>`
        + `<td class="num">${kv(['intactness', 'by_category', c, 'rate_day'], 'pct')}</td>`
        + `<td class="num">${kv(['intactness', 'by_category', c, 'rate_month'], 'pct', statusClass(sm))}</td>`
        + `<td class="num muted">${tg == null ? '—' : pct(tg)}</td><td>${bar(r.rate_month, sm)}</td></tr>`;
    }
    out += '</tbody></table></div>';

    // Per building.
    const blds = Object.keys(it.by_building || {});
    out += '<div class="panel"><h2>' + esc(t('ov.by_building')) + '</h2><table id="by-building"><thead><tr>'
      + `<th>${esc(t('col.building'))}</th><th class="num">${esc(t('col.intact_total'))}</th><th class="num">${esc(t('col.now'))}</th><th class="num">${esc(t('col.today'))}</th><th class="num">${esc(t('col.month'))}</th><th></th>`
      + '</tr></thead><tbody>';
    for (const b of blds) {
      const r = it.by_building[b];
      const sm = status(r.rate_month, siteT);
      out += `<tr><td>${esc(b)}</td><td class="num">${kv(['intactness', 'by_building', b, 'intact'], 'int')}/${kv(['intactness', 'by_building', b, 'total'], 'int')}</td>`
        + `<td class="num">${kv(['intactness', 'by_building', b, 'instant'], 'pct', statusClass(status(r.instant, siteT)))}</td>`
        + `<td class="num">${kv(['intactness', 'by_building', b, 'rate_day'], 'pct')}</td>`
        + `<td class="num">${kv(['intactness', 'by_building', b, 'rate_month'], 'pct', statusClass(sm))}</td><td>${bar(r.rate_month, sm)}</td></tr>`;
    }
    out += '</tbody></table></div></div>';

    // Response timeliness of the month, in all and per category.
    out += '<div class="panel section"><h2>' + esc(t('ov.response_detail')) + '</h2><table id="response"><thead><tr>'
      + `<th>${esc(t('col.category'))}</th><th class="num">${esc(t('col.timely'))}</th><th class="num">${esc(t('col.count'))}</th><th class="num">${esc(t('col.transient'))}</th>`
      + `<th class="num">${esc(t('col.p50'))}</th><th class="num">${esc(t('col.p90'))}</th><th class="num">${esc(t('col.max'))}</th>`
      + `<th class="num">${esc(t('col.arrival'))}</th><th class="num">${esc(t('col.count'))}</th><th class="num">${esc(t('col.repair'))}</th><th class="num">${esc(t('col.count'))}</th></tr></thead><tbody>`;
    // One row per scope (the site, each category): response with its times, then arrival and repair.
    const stepCells = (step, tail, r, tg) => {
      const path = [step, 'month', ...tail];
      return `<td class="num">${kv([...path, 'timely_rate'], 'pct', statusClass(status(r?.timely_rate, tg)))}</td><td class="num">${kv([...path, 'count'], 'int')}</td>`;
    };
    const respRow = (label, tail, r, a, p) => `<tr data-scope="${esc(tail.length ? tail[1] : 'site')}"><td>${esc(label)}</td>`
      + `<td class="num">${kv(['response', 'month', ...tail, 'timely_rate'], 'pct', statusClass(status(r.timely_rate, respT)))}</td>`
      + `<td class="num">${kv(['response', 'month', ...tail, 'count'], 'int')}</td><td class="num">${kv(['response', 'month', ...tail, 'transient'], 'int')}</td>`
      + `<td class="num">${esc(fmtDur(r.p50_s))}</td><td class="num">${esc(fmtDur(r.p90_s))}</td><td class="num">${esc(fmtDur(r.max_s))}</td>`
      + stepCells('arrival', tail, a, arrT) + stepCells('repair', tail, p, repT) + '</tr>';
    out += respRow(t('site'), [], resp, arr, rep);
    for (const [c, r] of Object.entries(resp.by_category || {})) {
      out += respRow(catLabel(c), ['by_category', c], r, arr.by_category?.[c], rep.by_category?.[c]);
    }
    out += '</tbody></table>';
    out += `<div class="note">${esc(t('ov.data_at'))} ${esc(fmtTime(k.ts))}</div></div>`;
    // The most urgent active alarms, read-only: the alarms page is where they are handled.
    if (act.length) {
      out += `<div class="panel section"><h2><a href="#/alarms">${esc(t('ov.active'))}</a> <span class="muted">${act.length}</span></h2><table id="overview-alarms"><tbody>`;
      for (const a of act.slice(0, 8)) {
        out += `<tr class="alarm ${esc(a.severity)}"><td>${sevHtml(a.severity)}</td><td><span class="msg">${esc(a.message)}</span> <span class="where">· ${esc(a.building)}</span></td>`
          + `<td class="num countdown" data-age="${a.raised_ts}"></td>`
          + `<td class="num countdown" data-deadline="${a.raised_ts + a.ack_target_s * 1000}" data-acked="${a.acknowledged ? a.acknowledged.ts : ''}"></td><td>${handling(a)}</td></tr>`;
      }
      out += '</tbody></table></div>';
    }
    out += '</section>';
    return out;
  }

  // ----- alarms
  function alarmsPage() {
    const act = activeAlarms();
    let out = '<section id="alarms"><div class="panel"><h2>' + esc(t('al.active'))
      + ` <span class="muted">${act.length}</span></h2>`;
    if (!S.alarmsLoaded) out += `<div class="empty">…</div>`;
    else if (!act.length) out += `<div class="empty">${esc(t('al.none'))}</div>`;
    else {
      out += '<table id="active-alarms"><thead><tr>'
        + `<th>${esc(t('col.severity'))}</th><th>${esc(t('col.alarm'))}</th><th>${esc(t('col.raised'))}</th><th class="num">${esc(t('col.age'))}</th>`
        + `<th class="num">${esc(t('col.deadline'))}</th><th>${esc(t('col.handling'))}</th><th></th></tr></thead><tbody>`;
      for (const a of act) out += alarmRow(a);
      out += '</tbody></table>';
    }
    out += '</div>';
    const cleared = [...S.alarms.values()].filter((a) => !a.active).sort((a, b) => (b.cleared_ts || 0) - (a.cleared_ts || 0)).slice(0, 50);
    out += '<div class="panel section"><h2>' + esc(t('al.cleared')) + '</h2>';
    if (!cleared.length) out += `<div class="empty">${esc(t('al.none_cleared'))}</div>`;
    else {
      out += '<table id="cleared-alarms"><thead><tr>'
        + `<th>${esc(t('col.severity'))}</th><th>${esc(t('col.alarm'))}</th><th>${esc(t('col.raised'))}</th><th>${esc(t('col.cleared'))}</th>`
        + `<th class="num">${esc(t('col.response'))}</th><th class="num">${esc(t('col.restore'))}</th><th>${esc(t('col.handling'))}</th></tr></thead><tbody>`;
      for (const a of cleared) {
        out += `<tr class="alarm" data-alarm-id="${esc(a.id)}"><td>${sevHtml(a.severity)}</td>`
          + `<td><div class="msg">${esc(a.message)}</div><div class="where"><a href="${deviceHref(a.site, a.device)}">${esc(a.name)}</a> · ${esc(a.building)} · ${esc(a.id)}</div></td>`
          + `<td class="num">${esc(fmtTime(a.raised_ts))}</td><td class="num">${esc(fmtTime(a.cleared_ts))}</td>`
          + `<td class="num ${a.response_s != null && a.response_s > a.ack_target_s ? 's-warn' : ''}">${esc(fmtDur(a.response_s))}</td><td class="num">${esc(fmtDur(a.restore_s))}</td>`
          + `<td>${handling(a)}</td></tr>`;
      }
      out += '</tbody></table>';
    }
    out += '</div></section>';
    return out;
  }
  function handling(a) {
    const parts = [];
    if (a.acknowledged) parts.push(`<span class="${a.response_s > a.ack_target_s ? 's-warn' : 's-ok'}" data-acked-by="${esc(a.acknowledged.by)}">${esc(t('al.acked'))} · ${esc(a.acknowledged.by)}</span>`);
    if (a.on_site) parts.push(`<span class="s-ok">${esc(t('al.on_site'))} · ${esc(a.on_site.by)}</span>`);
    // Escalation steps fired for it (unanswered too long): how many, and each in the tooltip.
    const x = a.escalations || [];
    if (x.length) {
      const title = x.map((e) => `${t('al.step').replace('{n}', e.step)} · ${fmtTime(e.ts)} · ${e.notify}\n${e.message}`).join('\n\n');
      parts.push(`<span class="s-bad escalated" data-escalations="${x.length}" title="${esc(title)}">${esc(t('al.escalated').replace('{n}', x.length))}</span>`);
    }
    return parts.join('<br>') || '<span class="muted">—</span>';
  }
  function alarmRow(a) {
    const fresh = S.fresh.has(a.id);
    S.fresh.delete(a.id);
    const err = S.rowErrors.get(a.id);
    return `<tr class="alarm ${esc(a.severity)} ${fresh ? 'fresh' : ''}" data-alarm-id="${esc(a.id)}" data-device="${esc(a.device)}">`
      + `<td>${sevHtml(a.severity)}</td>`
      + `<td><div class="msg">${esc(a.message)}</div><div class="where"><a href="${deviceHref(a.site, a.device)}">${esc(a.name)}</a> · ${esc(a.building)} · ${esc(catLabel(a.category))} · ${esc(a.id)}</div>`
      + (err ? `<div class="row-error">${esc(err)}</div>` : '') + '</td>'
      + `<td class="num">${esc(fmtTime(a.raised_ts))}</td>`
      + `<td class="num countdown" data-age="${a.raised_ts}"></td>`
      + `<td class="num countdown" data-deadline="${a.raised_ts + a.ack_target_s * 1000}" data-acked="${a.acknowledged ? a.acknowledged.ts : ''}"></td>`
      + `<td>${handling(a)}</td>`
      + `<td><div class="actions">`
      + (a.acknowledged ? '' : `<button type="button" class="primary" data-act="ack" data-id="${esc(a.id)}">${esc(t('btn.ack'))}</button>`)
      + (a.on_site ? '' : `<button type="button" data-act="on_site" data-id="${esc(a.id)}">${esc(t('btn.on_site'))}</button>`)
      + '</div></td></tr>';
  }

  // ----- devices
  function renderDevices(view) {
    if (!view.querySelector('#dev-filter')) {
      view.innerHTML = `<section id="devices"><div class="filters" id="dev-filter">`
        + ['', 'fault', 'offline', 'maintenance', 'intact'].map((s) => `<button type="button" class="chip" data-state="${s}">${esc(s ? stateLabel(s) : t('all'))}<span class="muted" data-n="${s}"></span></button>`).join('')
        + `<input type="search" id="dev-q" placeholder="${esc(t('dev.search'))}" value="${esc(S.devFilter.q)}">`
        + `<span class="muted" id="dev-count"></span></div><div id="dev-body"></div></section>`;
      view.querySelector('#dev-q').addEventListener('input', (e) => { S.devFilter.q = e.target.value; renderDevices(view); });
    }
    for (const b of view.querySelectorAll('#dev-filter .chip')) b.classList.toggle('on', b.dataset.state === S.devFilter.state);
    const counts = { '': S.devices.length };
    for (const d of S.devices) counts[d.state] = (counts[d.state] || 0) + 1;
    for (const el of view.querySelectorAll('[data-n]')) el.textContent = ' ' + (counts[el.dataset.n] || 0);
    const body = view.querySelector('#dev-body');
    if (S.devicesError && !S.devicesLoaded) { body.innerHTML = `<div class="banner error">${esc(S.devicesError)}</div>`; return; }
    const q = S.devFilter.q.trim().toLowerCase();
    const list = S.devices.filter((d) => (!S.devFilter.state || d.state === S.devFilter.state)
      && (!q || [d.name, d.id, d.building, catLabel(d.category)].some((x) => String(x).toLowerCase().includes(q))));
    view.querySelector('#dev-count').textContent = `${list.length} ${t('dev.shown')}`;
    const active = new Map();
    for (const a of S.alarms.values()) if (a.active) { const k = a.site + '\u0000' + a.device; active.set(k, (active.get(k) || 0) + 1); }
    const byB = new Map();
    for (const d of list) {
      if (!byB.has(d.building)) byB.set(d.building, new Map());
      const c = byB.get(d.building);
      if (!c.has(d.category)) c.set(d.category, []);
      c.get(d.category).push(d);
    }
    const coll = new Intl.Collator(lang === 'en' ? 'en' : 'zh-CN', { numeric: true });
    let out = '';
    for (const b of [...byB.keys()].sort(coll.compare)) {
      const cats = byB.get(b);
      const all = [...cats.values()].flat();
      const bad = all.filter((d) => d.state === 'fault').length;
      out += `<div class="panel building"><h2>${esc(b)} <span class="muted">${all.length} · ${esc(stateLabel('intact'))} ${all.filter((d) => d.state === 'intact').length}${bad ? ` · <span class="s-bad">${esc(stateLabel('fault'))} ${bad}</span>` : ''}</span></h2>`;
      for (const c of [...cats.keys()].sort()) {
        out += `<div class="cat"><div class="cat-name">${esc(catLabel(c))}</div><div class="tiles-dev">`;
        for (const d of cats.get(c).sort((x, y) => coll.compare(x.name, y.name))) {
          const n = active.get(d.site + '\u0000' + d.id) || 0;
          out += `<a class="dev ${esc(d.state)}" href="${deviceHref(d.site, d.id)}" data-device="${esc(d.id)}" title="${esc(d.id)}">`
            + `${esc(d.name)} <span class="s">${esc(stateLabel(d.state))}${n ? ` · ⚠ ${n}` : ''}</span></a>`;
        }
        out += '</div></div>';
      }
      out += '</div>';
    }
    body.innerHTML = out || `<div class="empty">${esc(S.devicesLoaded ? t('dev.none') : '…')}</div>`;
  }

  function devicePage() {
    const rt = route();
    let out = `<section id="device"><p><a href="#/devices">${esc(t('dev.back'))}</a></p>`;
    if (S.deviceError) return out + `<div class="banner error">${esc(t('dev.not_found'))}: ${esc(S.deviceError)}</div></section>`;
    const d = S.device;
    if (!d || d.site + '\u0000' + d.id !== rt.site + '\u0000' + rt.id) return out + '<div class="empty">…</div></section>';
    out += `<h1>${esc(d.name)} <span class="muted">${esc(d.id)}</span> ${stateHtml(d.state)}</h1>`;
    out += '<div class="grid cols-2"><div class="panel"><dl class="facts">'
      + `<dt>${esc(t('col.building'))}</dt><dd>${esc(d.building)}</dd>`
      + `<dt>${esc(t('col.category'))}</dt><dd>${esc(catLabel(d.category))}</dd>`
      + `<dt>${esc(t('dev.source'))}</dt><dd>${esc(d.source)}${d.modbus ? ` · ${esc(d.modbus.endpoint)} #${esc(d.modbus.unit)} · ${esc(d.modbus.model)}` : ''}</dd>`
      + `<dt>${esc(t('dev.since'))}</dt><dd>${esc(fmtTime(d.since_ts))}</dd>`
      + `<dt>${esc(t('dev.last_seen'))}</dt><dd>${d.last_seen_ts == null ? esc(t('dev.never')) : esc(fmtTime(d.last_seen_ts))}</dd>`
      + '</dl></div>';
    out += `<div class="panel"><h2>${esc(t('dev.values'))}</h2><table id="values"><thead><tr><th>${esc(t('col.signal'))}</th><th class="num">${esc(t('col.value'))}</th></tr></thead><tbody>`;
    const sigs = d.signals || Object.keys(d.values || {}).map((name) => ({ name }));
    for (const s of sigs) {
      const label = lang === 'zh' && s.label ? `${esc(s.label)} <span class="muted">${esc(s.name)}</span>` : esc(s.name);
      out += `<tr><td>${label}</td><td class="num">${fmtValue(d.values?.[s.name], s.unit)}</td></tr>`;
    }
    out += '</tbody></table></div></div>';
    out += deviceFigures();
    out += `<div class="panel section"><h2>${esc(t('dev.alarms'))}</h2>`;
    if (!S.deviceAlarms.length) out += `<div class="empty">${esc(t('dev.no_alarms'))}</div>`;
    else {
      out += `<table id="device-alarms"><thead><tr><th>${esc(t('col.severity'))}</th><th>${esc(t('col.alarm'))}</th><th>${esc(t('col.raised'))}</th><th>${esc(t('col.cleared'))}</th><th class="num">${esc(t('col.response'))}</th><th class="num">${esc(t('col.restore'))}</th><th>${esc(t('col.handling'))}</th></tr></thead><tbody>`;
      for (const a of S.deviceAlarms) {
        out += `<tr class="alarm"><td>${sevHtml(a.severity)}</td><td><div class="msg">${esc(a.message)}</div><div class="where">${esc(a.id)}</div></td>`
          + `<td class="num">${esc(fmtTime(a.raised_ts))}</td><td class="num">${a.active ? `<span class="s-bad">${esc(t('al.active'))}</span>` : esc(fmtTime(a.cleared_ts))}</td>`
          + `<td class="num">${esc(fmtDur(a.response_s))}</td><td class="num">${esc(fmtDur(a.restore_s))}</td><td>${handling(a)}</td></tr>`;
      }
      out += '</tbody></table>';
    }
    out += `</div><div class="panel section"><h2>${esc(t('dev.maintenance'))}</h2>`;
    const ws = d.maintenance || [];
    if (!ws.length) out += `<div class="empty">${esc(t('dev.no_windows'))}</div>`;
    else {
      out += `<table><thead><tr><th>${esc(t('col.start'))}</th><th>${esc(t('col.end'))}</th><th>${esc(t('col.reason'))}</th><th>${esc(t('col.by'))}</th></tr></thead><tbody>`;
      for (const w of ws) out += `<tr><td class="num">${esc(fmtTime(w.start_ts))}</td><td class="num">${esc(fmtTime(w.end_ts))}</td><td>${esc(w.reason)}</td><td>${esc(w.by)}</td></tr>`;
      out += '</tbody></table>';
    }
    return out + '</div></section>';
  }

  // This month's figures of the device (GET /api/devices/{id}/figures).
  function deviceFigures() {
    const f = S.deviceFigures;
    if (!f) return '';
    const h = (s) => (s == null ? '—' : (s / 3600).toFixed(2) + ' ' + t('unit.h'));
    const cells = [
      ['fig.rate', pct(f.intactness)], ['fig.intact', h(f.time_s.intact)], ['fig.fault', h(f.time_s.fault)],
      ['fig.offline', h(f.time_s.offline)], ['fig.maintenance', h(f.time_s.maintenance)],
      ['fig.faults', String(f.fault_count)], ['fig.alarms', String(f.alarm_count)], ['fig.mttr', fmtDur(f.mttr_s)],
    ];
    return `<div class="panel section"><h2>${esc(t('dev.figures'))}</h2><table id="device-figures"><thead><tr>`
      + cells.map(([k]) => `<th class="num">${esc(t(k))}</th>`).join('')
      + '</tr></thead><tbody><tr>' + cells.map(([, v]) => `<td class="num">${esc(v)}</td>`).join('') + '</tr></tbody></table></div>';
  }

  // ----- heating
  function heatingPage() {
    const k = S.kpi;
    const h = k?.heating;
    const min = h?.min_indoor_c ?? S.assessment?.heating?.min_indoor_c ?? 18;
    const heatT = targetOf('heating');
    let out = '<section id="heating">';
    if (h && !h.in_season) out += `<div class="banner">${esc(t('ov.not_season'))} — ${esc(t('ht.not_season'))}</div>`;
    if (S.heating.error) out += `<div class="banner error">${esc(S.heating.error)}</div>`;
    out += '<div class="grid cols-2">';
    // Per building, from /api/kpi.
    out += `<div class="panel"><h2>${esc(t('ht.by_building'))}${heatT != null ? ` <span class="muted">${esc(t('ov.target'))} ${pct(heatT)}</span>` : ''}</h2>`;
    const blds = Object.entries(h?.by_building || {});
    if (h) {
      out += `<div class="tiles" style="margin-bottom:1rem"><div class="tile ${h.in_season ? status(h.compliance_month, heatT) : 'none'}"><div class="label">${esc(t('ov.heating'))}</div>`
        + `<div class="value">${h.in_season ? kv(['heating', 'compliance_month'], 'pct') : `<span class="s-none">${esc(t('ov.not_season'))}</span>`}</div>`
        + `<div class="sub">${esc(t('ov.coverage'))} ${kv(['heating', 'coverage_month'], 'pct')} · ${esc(t('col.avg'))} ${h.avg_indoor_c == null ? '—' : esc(h.avg_indoor_c.toFixed(1)) + ' °C'}</div></div></div>`;
    }
    if (!blds.length) out += `<div class="empty">${esc(t('ht.no_buildings'))}</div>`;
    else {
      out += `<table id="heating-buildings"><thead><tr><th>${esc(t('col.building'))}</th><th class="num">${esc(t('col.compliance'))}</th><th class="num">${esc(t('col.coverage'))}</th><th class="num">${esc(t('col.avg'))}</th><th class="num">${esc(t('col.sensors'))}</th><th></th></tr></thead><tbody>`;
      for (const [b, r] of blds) {
        const st = status(r.compliance, heatT);
        out += `<tr><td>${esc(b)}</td><td class="num">${kv(['heating', 'by_building', b, 'compliance'], 'pct', statusClass(st))}</td>`
          + `<td class="num">${kv(['heating', 'by_building', b, 'coverage'], 'pct')}</td>`
          + `<td class="num">${r.avg_indoor_c == null ? '—' : esc(r.avg_indoor_c.toFixed(1)) + ' °C'}</td><td class="num">${esc(r.sensors ?? '—')}</td><td>${bar(r.compliance, st)}</td></tr>`;
      }
      out += '</tbody></table>';
    }
    out += '</div>';
    // Histogram of the latest indoor temperatures.
    const temps = S.heating.sensors.map((d) => d.values?.indoor_temp_c).filter((v) => typeof v === 'number' && Number.isFinite(v));
    out += `<div class="panel"><h2>${esc(t('ht.hist'))} <span class="muted">${temps.length} ${esc(t('ht.reporting'))} · ${esc(t('ht.min'))} ${esc(min)} °C</span></h2>`;
    if (!temps.length) out += `<div class="empty">${esc(S.heating.loaded ? t('ht.no_sensors') : '…')}</div>`;
    else {
      const lo = Math.min(14, Math.floor(Math.min(...temps))), hi = Math.max(26, Math.ceil(Math.max(...temps)) + 1);
      const from = Math.max(lo, 10), to = Math.min(hi, 30);
      const bins = [];
      for (let x = from; x < to; x++) bins.push({ x, n: 0 });
      for (const v of temps) {
        const i = Math.min(bins.length - 1, Math.max(0, Math.floor(v) - from));
        bins[i].n++;
      }
      const max = Math.max(...bins.map((b) => b.n));
      const below = temps.filter((v) => v < min).length;
      out += '<div class="hist" id="temp-hist">' + bins.map((b) => `<div class="b ${b.x + 1 <= min ? 'low' : ''}" style="height:${(b.n / max * 100).toFixed(1)}%" title="${b.x}–${b.x + 1} °C: ${b.n}">${b.n ? `<span>${b.n}</span>` : ''}</div>`).join('') + '</div>';
      out += '<div class="hist-x">' + bins.map((b, i) => `<span>${i === 0 ? '≤' : ''}${b.x}${i === bins.length - 1 ? '+' : ''}</span>`).join('') + '</div>';
      out += `<div class="note"><span class="${below ? 's-bad' : 's-ok'}">${below}</span> ${esc(t('ht.below'))} (${esc(min)} °C)</div>`;
    }
    out += '</div></div>';
    // Loops.
    out += `<div class="panel section"><h2>${esc(t('ht.loops'))}</h2>`;
    const loops = S.heating.loops;
    if (!loops.length) out += `<div class="empty">${esc(S.heating.loaded ? t('ht.no_loops') : '…')}</div>`;
    else {
      out += `<table id="loops"><thead><tr><th>${esc(t('col.device'))}</th><th>${esc(t('col.building'))}</th><th>${esc(t('col.state'))}</th><th class="num">${esc(t('col.supply'))}</th><th class="num">${esc(t('col.return'))}</th><th class="num">${esc(t('col.dt'))}</th><th class="num">${esc(t('col.pressure'))}</th><th>${esc(t('col.pump'))}</th></tr></thead><tbody>`;
      for (const d of loops) {
        const v = d.values || {};
        const dt = typeof v.supply_temp_c === 'number' && typeof v.return_temp_c === 'number' ? v.supply_temp_c - v.return_temp_c : null;
        out += `<tr><td><a href="${deviceHref(d.site, d.id)}">${esc(d.name)}</a></td><td>${esc(d.building)}</td><td>${stateHtml(d.state)}</td>`
          + `<td class="num">${fmtValue(v.supply_temp_c, '°C')}</td><td class="num">${fmtValue(v.return_temp_c, '°C')}</td>`
          + `<td class="num">${dt == null ? '—' : esc(dt.toFixed(1)) + ' <span class="muted">°C</span>'}</td>`
          + `<td class="num">${fmtValue(v.pressure_mpa, 'MPa')}</td>`
          + `<td>${v.pump_running == null ? '—' : v.pump_running ? `<span class="s-ok">${esc(t('pump.on'))}</span>` : `<span class="s-bad">${esc(t('pump.off'))}</span>`}</td></tr>`;
      }
      out += '</tbody></table>';
    }
    return out + '</div></section>';
  }

  // ----- assessment
  function scorecard(key, title) {
    const r = S.reports[key];
    let out = `<div class="panel" id="score-${key}">`;
    if (!r) return out + `<h2>${esc(title)}</h2><div class="empty">${esc(t('as.loading'))}</div></div>`;
    if (!r.ok) return out + `<h2>${esc(title)}</h2><div class="banner error">${esc(r.error)}</div></div>`;
    const s = r.body.score;
    out += `<h2>${esc(title)} <span class="muted">${esc(s.period.label)}</span></h2>`;
    const grades = S.assessment?.grades || [];
    const gradeSt = s.total == null ? 'none' : s.total >= (grades[0]?.min ?? 90) ? 'ok' : s.total >= (grades[grades.length - 2]?.min ?? 60) ? 'warn' : 'bad';
    out += `<div class="score-head"><div><div class="muted">${esc(t('as.total'))}</div><div class="total ${statusClass(gradeSt)}" data-total>${s.total == null ? esc(t('na')) : esc(s.total.toFixed(2))}</div></div>`
      + `<div><div class="muted">${esc(t('as.grade'))}</div><div class="grade ${statusClass(gradeSt)}" data-grade>${esc(gradeLabel(s.grade))}</div></div></div>`;
    out += `<table><thead><tr><th>${esc(t('col.kpi'))}</th><th class="num">${esc(t('col.actual'))}</th><th class="num">${esc(t('col.target'))}</th><th class="num">${esc(t('col.weight'))}</th><th class="num">${esc(t('col.score'))}</th><th></th></tr></thead><tbody>`;
    for (const k of s.kpis) {
      const st = status(k.actual, k.target);
      out += `<tr data-kpi-name="${esc(k.name)}"><td>${esc(kpiLabel(k))}</td><td class="num ${statusClass(st)}">${k.actual == null ? esc(t('na')) : pct(k.actual)}</td>`
        + `<td class="num muted">${pct(k.target)}</td><td class="num">${esc(k.weight)}</td>`
        + `<td class="num">${k.score == null ? esc(t('na')) : esc(k.score.toFixed(2))}</td><td>${bar(k.actual, st)}</td></tr>`;
    }
    out += '</tbody></table>';
    if (s.partial) out += `<div class="note">${esc(t('as.partial'))} ${esc(fmtTime(Date.parse(r.body.to)))}</div>`;
    return out + '</div>';
  }
  function assessmentPage() {
    let out = '<section id="assessment"><div class="grid cols-2">';
    out += scorecard('month', t('as.month')) + scorecard('quarter', t('as.quarter'));
    out += '</div>';
    const a = S.assessment;
    if (a) {
      out += `<div class="panel section"><h2>${esc(t('as.grades'))}</h2><p>`
        + a.grades.map((g) => `${esc(gradeLabel(g.name))} ≥ ${esc(g.min)}`).join(' · ') + '</p>';
      out += `<p class="muted">${esc(t('as.rules'))}: ` + a.kpis.map((k) => `${esc(kpiLabel(k))} ${esc(k.deduct_per_point)} ${esc(t('as.points'))}`).join(' · ') + '</p></div>';
    }
    return out + '</section>';
  }

  // ---------------------------------------------------------------- every second
  function tick() {
    const n = now();
    document.getElementById('clock').textContent = fmtTime(n);
    for (const el of document.querySelectorAll('[data-age]')) el.textContent = clockDur(n - Number(el.dataset.age));
    for (const el of document.querySelectorAll('[data-deadline]')) {
      const deadline = Number(el.dataset.deadline);
      const acked = el.dataset.acked ? Number(el.dataset.acked) : null;
      if (acked != null) {
        el.className = 'num countdown ' + (acked <= deadline ? 'done' : 'late');
        el.textContent = acked <= deadline ? '✔' : `${t('al.late')} ${clockDur(acked - deadline)}`;
      } else if (n <= deadline) {
        el.className = 'num countdown';
        el.textContent = `${t('al.left')} ${clockDur(deadline - n)}`;
      } else {
        el.className = 'num countdown overdue';
        el.textContent = `${t('al.overdue')} ${clockDur(n - deadline)}`;
      }
    }
  }

  // ---------------------------------------------------------------- operator steps
  const dlg = document.getElementById('step-dialog');
  let pending = null;
  function openStep(kind, id) {
    const a = S.alarms.get(id);
    pending = { kind, id };
    document.getElementById('step-title').textContent = t(kind === 'ack' ? 'dlg.ack' : 'dlg.on_site');
    document.getElementById('step-alarm').textContent = a ? `${a.message} · ${a.name} · ${a.id}` : id;
    document.getElementById('step-by').value = localStorage.getItem('estate.operator') || '';
    document.getElementById('step-token').value = '';
    document.getElementById('step-token-row').hidden = !!sessionStorage.getItem('estate.token');
    showError('');
    dlg.showModal();
    (document.getElementById('step-by').value ? document.getElementById('step-ok') : document.getElementById('step-by')).focus();
  }
  function showError(msg) {
    const e = document.getElementById('step-error');
    e.hidden = !msg;
    e.textContent = msg;
  }
  async function submitStep() {
    if (!pending) return;
    const by = document.getElementById('step-by').value.trim();
    if (!by) { showError(t('err.name')); return; }
    const tokenRow = document.getElementById('step-token-row');
    if (!tokenRow.hidden) {
      const tok = document.getElementById('step-token').value.trim();
      if (!tok) { showError(t('err.token')); return; }
      sessionStorage.setItem('estate.token', tok);
    }
    localStorage.setItem('estate.operator', by);
    const ok = document.getElementById('step-ok');
    ok.disabled = true;
    const { kind, id } = pending;
    const r = await api(`/api/alarms/${encodeURIComponent(id)}/${kind}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${sessionStorage.getItem('estate.token') || ''}` },
      body: JSON.stringify({ by }),
    });
    ok.disabled = false;
    if (r.ok) {
      S.rowErrors.delete(id);
      r.body._at = Date.now();
      S.alarms.set(id, r.body);
      pending = null;
      dlg.close();
      render();
      return;
    }
    if (r.status === 401) {
      sessionStorage.removeItem('estate.token');
      tokenRow.hidden = false;
      document.getElementById('step-token').value = '';
      showError(`${t('err.401')} (${r.error})`);
      document.getElementById('step-token').focus();
      return;
    }
    S.rowErrors.set(id, `${r.status || ''} ${r.error}`.trim());
    showError(`${r.status || ''} ${r.error}`.trim());
    if (r.status === 409) loadAlarms();
  }
  document.getElementById('step-form').addEventListener('submit', (e) => { e.preventDefault(); submitStep(); });
  document.getElementById('step-cancel').addEventListener('click', () => { pending = null; dlg.close(); render(); });

  document.getElementById('view').addEventListener('click', (e) => {
    const b = e.target.closest('button');
    if (!b) return;
    if (b.dataset.act) openStep(b.dataset.act, b.dataset.id);
    else if (b.dataset.state !== undefined && b.classList.contains('chip')) { S.devFilter.state = b.dataset.state; render(); }
  });

  // ---------------------------------------------------------------- language switch
  function applyLang() {
    for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    document.getElementById('lang').textContent = lang === 'en' ? '中文' : 'EN';
    document.title = `${t('title')} · estate-gateway`;
    setConn(S.connState || 'wait');
    const v = document.getElementById('view');
    if (route().page === 'devices') v.innerHTML = '';
    render();
  }
  document.getElementById('lang').addEventListener('click', () => {
    lang = lang === 'en' ? 'zh' : 'en';
    localStorage.setItem('estate.lang', lang);
    applyLang();
  });

  // ---------------------------------------------------------------- start
  window.addEventListener('hashchange', onRoute);
  (async () => {
    applyLang();
    await loadAssessment();
    const every = Math.min(30, Math.max(2, S.assessment?.kpi_interval_s || 10));
    onRoute();
    refetchAll();
    connect();
    setInterval(tick, 1000);
    setInterval(loadKpi, every * 1000);
    setInterval(() => { loadAlarms(); loadDevices(); if (!S.assessment) loadAssessment(); }, 60000);
    setInterval(() => {
      const rt = route();
      if (rt.page === 'heating') loadHeating();
      if (rt.page === 'device') loadDevice(rt.site, rt.id);
    }, 15000);
    setInterval(() => { if (route().page === 'assessment') loadReports(); }, 300000);
  })();
})();
