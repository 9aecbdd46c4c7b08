// diemcau operator console: login, a live board fed by server-sent events (no polling), a map of the
// halls, the programme preview (WHEP through the orchestrator), operator actions and the audit log.
import { OUTLINE, ISLANDS, project } from "/console/map.js";

const I18N = {
  vi: { login_title: "Đăng nhập điều hành", username: "Tên đăng nhập", password: "Mật khẩu", login: "Đăng nhập",
        logout: "Đăng xuất", relays: "Máy chủ chuyển tiếp", relay: "Relay", role: "Vai trò", region: "Miền",
        health: "Tình trạng", halls: "Điểm cầu", subscribers: "Thuê bao", upstream: "Nguồn trên", cpu: "CPU %",
        north: "Miền Bắc", central: "Miền Trung", south: "Miền Nam", hall: "Điểm cầu", state: "Trạng thái",
        layer: "Lớp", bitrate: "kbps", loss: "Mất gói %", rtt: "RTT", fps: "fps", freezes: "Đứng hình/phút",
        latency: "Trễ ms", last_seen: "Lần cuối", on_air: "Đang phát", degraded: "Suy giảm", dark: "Mất tín hiệu",
        connecting: "Đang kết nối", audio_only: "Chỉ âm thanh", on_backup: "Đường dự phòng", alive: "hoạt động", dead: "chết",
        drained: "đang rút", bad_login: "Sai tên đăng nhập hoặc mật khẩu", summary: "điểm cầu đang phát", standby: "Dự phòng",
        tab_board: "Bảng", tab_log: "Nhật ký", map: "Bản đồ điểm cầu", preview: "Xem chương trình", preview_start: "Xem",
        preview_stop: "Dừng", source: "Nguồn studio", feeds: "Nguồn có", on_air_feed: "Đang phát", primary: "chính",
        backup: "dự phòng", mixed: "không đồng nhất", put_primary: "Phát nguồn chính", put_backup: "Phát nguồn dự phòng",
        kind: "Loại", subject: "Đối tượng", actor: "Người làm", filter: "Lọc", export_csv: "Xuất CSV", time: "Thời gian",
        detail: "Chi tiết", move_to: "Chuyển sang relay", move: "Chuyển", close: "Đóng", cancel: "Huỷ", confirm: "Xác nhận",
        drain: "Rút tải", undrain: "Đưa lại", source_label: "Nguồn",
        layer_ceiling: "Lớp cao nhất", layer_floor: "Lớp thấp nhất", layer_apply: "Áp dụng", layer_any: "(không giới hạn)",
        cut: "mất kênh điều khiển, vẫn phát", layer_reason: "lý do", no_ladder: "Không relay nào có thang bitrate",
        confirm_layer: (h, what) => `Đặt lớp cho ${h}: ${what}?`,
        confirm_move: (h, a, b) => `Chuyển điểm cầu ${h} từ ${a} sang ${b}?`,
        confirm_drain: (r) => `Rút tải relay ${r}? Các điểm cầu của nó sẽ được chuyển đi.`,
        confirm_undrain: (r) => `Đưa relay ${r} trở lại phục vụ?`,
        confirm_source: (f) => `Phát nguồn ${f} tới tất cả điểm cầu?`,
        done: "Đã thực hiện", refused: "Bị từ chối",
        floor: "Quyền phát biểu", floor_holder: "Đang phát biểu", floor_give: "Trao quyền", floor_raise: "Xin phát biểu",
        floor_take: "Thu hồi", floor_queue: "Đang chờ phát biểu", sessions: "Các phiên", title: "Tên phiên", theme: "Chủ đề",
        when: "Thời gian", session_state: "Trạng thái", scheduled: "chưa diễn ra", live: "đang diễn ra", ended: "đã kết thúc",
        start: "Bắt đầu", end: "Kết thúc", confirm_floor: (h) => `Trao quyền phát biểu cho ${h}?`,
        confirm_take: (h) => `Thu hồi quyền phát biểu của ${h}?`,
        confirm_start: (s) => `Bắt đầu phiên ${s}? Các điểm cầu của phiên chuyển sang chương trình của phiên.`,
        confirm_end: (s) => `Kết thúc phiên ${s}? Các điểm cầu trở về chương trình chính.`,
        qoe_frozen: "hình đứng", qoe_black: "hình đen", qoe_silent: "mất tiếng", av_drift: "Lệch tiếng/hình (ms)",
        hitless: "không gián đoạn: cả hai đường cùng mang chương trình", hitless_on: "Bật không gián đoạn (2× băng thông)",
        hitless_off: "Tắt không gián đoạn",
        confirm_hitless_on: (h) => `Bật chế độ không gián đoạn cho ${h}: cả hai đường cùng mang chương trình (gấp đôi băng thông)?`,
        confirm_hitless_off: (h) => `Tắt chế độ không gián đoạn cho ${h} (đường dự phòng được tạm dừng)?` },
  en: { login_title: "Operator login", username: "Username", password: "Password", login: "Log in",
        logout: "Log out", relays: "Relays", relay: "Relay", role: "Role", region: "Region",
        health: "Health", halls: "Halls", subscribers: "Subscribers", upstream: "Upstream", cpu: "CPU %",
        north: "North", central: "Central", south: "South", hall: "Hall", state: "State",
        layer: "Layer", bitrate: "kbps", loss: "Loss %", rtt: "RTT", fps: "fps", freezes: "Freezes/min",
        latency: "Latency ms", last_seen: "Last seen", on_air: "On air", degraded: "Degraded", dark: "Dark",
        connecting: "Connecting", audio_only: "Audio only", on_backup: "On backup", alive: "alive", dead: "dead",
        drained: "draining", bad_login: "Wrong username or password", summary: "halls on air", standby: "Standby",
        tab_board: "Board", tab_log: "Log", map: "Map of halls", preview: "Programme preview", preview_start: "Watch",
        preview_stop: "Stop", source: "Studio feeds", feeds: "Feeds present", on_air_feed: "On air", primary: "primary",
        backup: "backup", mixed: "mixed", put_primary: "Put primary on air", put_backup: "Put backup on air",
        kind: "Kind", subject: "Subject", actor: "Actor", filter: "Filter", export_csv: "Export CSV", time: "Time",
        detail: "Detail", move_to: "Move to relay", move: "Move", close: "Close", cancel: "Cancel", confirm: "Confirm",
        drain: "Drain", undrain: "Undrain", source_label: "Source",
        layer_ceiling: "Highest layer", layer_floor: "Lowest layer", layer_apply: "Apply", layer_any: "(no bound)",
        cut: "cut from the control plane, still serving", layer_reason: "why", no_ladder: "No relay has a bitrate ladder",
        confirm_layer: (h, what) => `Set the layer of ${h}: ${what}?`,
        confirm_move: (h, a, b) => `Move hall ${h} from ${a} to ${b}?`,
        confirm_drain: (r) => `Drain relay ${r}? Its halls will be moved elsewhere.`,
        confirm_undrain: (r) => `Put relay ${r} back in service?`,
        confirm_source: (f) => `Put the ${f} feed on air for every hall?`,
        done: "Done", refused: "Refused",
        floor: "The floor", floor_holder: "Speaking", floor_give: "Give the floor", floor_raise: "Asks to speak",
        floor_take: "Take it back", floor_queue: "Waiting to speak", sessions: "Sessions", title: "Title", theme: "Theme",
        when: "When", session_state: "State", scheduled: "scheduled", live: "live", ended: "ended", start: "Start",
        end: "End", confirm_floor: (h) => `Give the floor to ${h}?`, confirm_take: (h) => `Take the floor back from ${h}?`,
        confirm_start: (s) => `Start session ${s}? Its halls switch to its programme.`,
        confirm_end: (s) => `End session ${s}? Its halls return to the main programme.`,
        qoe_frozen: "frozen picture", qoe_black: "black picture", qoe_silent: "no sound", av_drift: "A/V drift (ms)",
        hitless: "hitless: both paths carry the programme", hitless_on: "Hitless on (2× bandwidth)",
        hitless_off: "Hitless off",
        confirm_hitless_on: (h) => `Hitless mode for ${h}: both paths carry the programme (twice the bandwidth)?`,
        confirm_hitless_off: (h) => `Turn hitless mode off for ${h} (the standby path is parked)?` },
};
let lang = localStorage.getItem("dc_lang") || "vi";
let board = null;
let stream = null;
let me = null;
let openHall = null;
let layerEdited = false;  // the operator changed the layer controls of the open hall and has not applied them yet
let eventsHead = "";
const t = (k, ...args) => {
  const v = (I18N[lang] && I18N[lang][k]) ?? k;
  return typeof v === "function" ? v(...args) : v;
};
const $ = (s) => document.querySelector(s);
const CSRF = { "X-Diemcau-Request": "1" };

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function num(v, digits = 0) { return v === undefined || v === null || v < 0 ? "–" : Number(v).toFixed(digits); }

function applyLang() {
  document.documentElement.lang = lang;
  $("#lang").textContent = lang === "vi" ? "EN" : "VI";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("#preview-toggle").textContent = t(preview.pc ? "preview_stop" : "preview_start");
  if (board) render(board);
}

function toast(text, ok) {
  const el = $("#toast");
  el.textContent = text;
  el.className = ok ? "ok" : "bad";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, ok ? 4000 : 8000);
}

// -- the board --------------------------------------------------------------------------------

function hallRow(h) {
  const live = h.state !== "dark";  // a dark hall's last figures are history, not state
  const v = (x, d) => (live ? num(x, d) : "–");
  return `
    <tr data-hall="${esc(h.id)}" data-state="${esc(h.state)}" tabindex="0">
      <td>${esc(h.id)}</td><td class="name">${esc(h.name)}</td>
      <td><span class="state s-${esc(h.state)}">${esc(t(h.state))}</span>${live ? (h.qoe_alarms || []).map((a) =>
        ` <span class="qoe" data-qoe="${esc(a)}">${esc(t("qoe_" + a))}</span>`).join("") : ""}</td>
      <td class="relay">${esc(h.relay || h.assigned_relay || "–")}</td>
      <td>${esc(live && h.backup ? h.backup + (h.backup_state === "standby" || h.hitless ? "" : " …") : "–")}${
        live && h.hitless ? ` <span class="hitless" title="${esc(t("hitless"))}">2×</span>` : ""}</td>
      <td class="layer" title="${esc(h.layer_reason || "")}">${esc(live && h.layer ? (h.layer === "audio" ? t("audio_only") : h.layer) : "–")}</td>
      <td>${v(h.bitrate_kbps)}</td><td>${v(h.loss_pct, 2)}</td><td>${v(h.fps)}</td>
      <td>${v(h.freezes)}</td><td>${v(h.latency_ms_p50)}</td>
      <td>${h.last_seen_ms == null ? "–" : (h.last_seen_ms / 1000).toFixed(1) + " s"}</td>
    </tr>`;
}

function render(b) {
  $("#regions").innerHTML = ["north", "central", "south"].map((r) => `
    <div class="region" data-region="${r}"><h2>${esc(t(r))}</h2><table><thead><tr>
      <th>ID</th><th>${t("hall")}</th><th>${t("state")}</th><th>${t("relay")}</th><th>${t("standby")}</th><th>${t("layer")}</th><th>${t("bitrate")}</th>
      <th>${t("loss")}</th><th>${t("fps")}</th><th>${t("freezes")}</th><th>${t("latency")}</th><th>${t("last_seen")}</th>
      </tr></thead><tbody>${b.halls.filter((h) => h.region === r).map(hallRow).join("")}</tbody></table></div>`).join("");
  const op = canOperate();
  $("#relays tbody").innerHTML = b.relays.map((r) => `
    <tr data-relay="${esc(r.id)}" data-alive="${r.alive}" data-drained="${r.drained}">
    <td>${esc(r.id)}</td><td>${esc(r.role)}</td><td>${esc(t(r.region))}</td>
    <td>${r.alive ? t("alive") : t("dead")}${r.cut ? ` · ${t("cut")} (${num(r.serving)})` : ""}${r.drained ? ` · ${t("drained")} (${esc(r.drained_by)})` : ""}</td>
    <td>${num(r.halls)}</td><td>${num(r.subscribers)}</td><td>${num(r.cpu_pct)}</td>
    <td>${esc(r.upstream || "–")}</td>
    <td><button type="button" class="op" data-drain="${esc(r.id)}" data-on="${!r.drained}" ${op ? "" : "disabled"}>
      ${t(r.drained ? "undrain" : "drain")}</button></td></tr>`).join("");
  renderSource(b.source || { origins: [], on_air: "" });
  renderMap(b);
  const c = b.counts || {};
  $("#summary").textContent = `${c.on_air || 0}/${b.halls.length} ${t("summary")}` +
    (c.on_backup ? ` · ${c.on_backup} ${t("on_backup")}` : "") + (c.degraded ? ` · ${c.degraded} ${t("degraded")}` : "") +
    (c.dark ? ` · ${c.dark} ${t("dark")}` : "");
  if (openHall) fillHall(openHall);
  if (b.events_head && b.events_head !== eventsHead && !$("#log").hidden) loadEvents(true);
  if (b.events_head !== eventsHead || !sessionsLoaded) loadSessionsAndFloor();  // only when something happened
  eventsHead = b.events_head || eventsHead;
  fillFloorHalls(b);
}

function renderSource(src) {
  $("#source tbody").innerHTML = src.origins.map((o) => `
    <tr data-origin="${esc(o.relay)}"><td>${esc(o.relay)}${o.alive ? "" : " (" + t("dead") + ")"}</td>
    <td>${o.feeds.map((f) => esc(t(f))).join(", ") || "–"}</td><td class="active">${esc(t(o.active_feed || "–"))}</td></tr>`).join("");
  const badge = $("#source-badge");
  badge.hidden = !src.on_air;
  badge.dataset.feed = src.on_air;
  badge.textContent = `${t("source_label")}: ${t(src.on_air)}`;
  document.querySelectorAll("[data-source]").forEach((btn) => {
    btn.disabled = !canOperate() || btn.dataset.source === src.on_air;
  });
}

function renderMap(b) {
  const svg = $("#map");
  if (!svg.dataset.drawn) {
    const pts = OUTLINE.map(([lon, lat]) => project(lon, lat).join(",")).join(" ");
    const isl = ISLANDS.map((g) => {
      const [x, y] = project(g.lon, g.lat);
      return `<g class="islands"><circle cx="${x}" cy="${y}" r="3"/><circle cx="${x + 7}" cy="${y + 5}" r="2"/>
        <circle cx="${x - 5}" cy="${y + 8}" r="2"/><text x="${x}" y="${y - 8}" text-anchor="middle">${esc(g.name)}</text></g>`;
    }).join("");
    svg.innerHTML = `<polygon class="land" points="${pts}"/>${isl}<g id="map-halls"></g>`;
    svg.dataset.drawn = "1";
  }
  $("#map-halls").innerHTML = b.halls.map((h) => {
    const [x, y] = project(h.lon, h.lat);
    return `<circle class="dot s-${esc(h.state)}" data-map-hall="${esc(h.id)}" cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="6">
      <title>${esc(h.id)} ${esc(h.name)} — ${esc(t(h.state))}</title></circle>`;
  }).join("");
}

// -- sessions and the floor ------------------------------------------------------------------

let sessionsLoaded = false;
let floorHolder = "";

async function loadSessionsAndFloor() {
  sessionsLoaded = true;
  const [rs, rf] = await Promise.all([fetch("/api/v1/sessions"), fetch("/api/v1/floor")]);
  if (rs.ok) renderSessions(await rs.json());
  if (rf.ok) renderFloor(await rf.json());
}

// the programme's times are Vietnam's (the halls' and the studio's), whatever the operator's PC says
const PROGRAMME_TZ = "Asia/Ho_Chi_Minh";
function localTime(iso) {
  const d = new Date(iso);
  return d.toLocaleString(lang === "vi" ? "vi-VN" : "en-GB", { dateStyle: "short", timeStyle: "short", timeZone: PROGRAMME_TZ });
}

function renderSessions(data) {
  const op = canOperate();
  $("#sessions tbody").innerHTML = data.sessions.map((x) => `
    <tr data-session="${esc(x.id)}" data-state="${esc(x.state)}"><td>${esc(x.id)}</td>
    <td>${esc(lang === "en" && x.title_en ? x.title_en : x.title)}</td><td>${esc(x.theme_name)}</td>
    <td>${esc(localTime(x.start))}–${esc(new Date(x.end).toLocaleTimeString(lang === "vi" ? "vi-VN" : "en-GB", { timeStyle: "short", timeZone: PROGRAMME_TZ }))}</td>
    <td>${num(x.hall_count)}</td><td><span class="state s-${x.state === "live" ? "on_air" : "connecting"}">${esc(t(x.state))}</span></td>
    <td><button type="button" class="op" data-session-act="${x.state === "live" ? "end" : "start"}" data-id="${esc(x.id)}"
      ${op ? "" : "disabled"}>${t(x.state === "live" ? "end" : "start")}</button></td></tr>`).join("");
}

function renderFloor(data) {
  floorHolder = data.holder ? data.holder.hall : "";
  const el = $("#floor-holder");
  el.textContent = floorHolder || "–";
  el.dataset.hall = floorHolder;
  $("#floor-take").disabled = !canOperate() || !floorHolder;
  $("#floor-queue").innerHTML = data.queue.map((q) => `<li data-queued="${esc(q.hall)}">${esc(q.hall)}
    <button type="button" class="op" data-floor-to="${esc(q.hall)}" ${canOperate() ? "" : "disabled"}>${t("floor_give")}</button></li>`).join("");
}

function fillFloorHalls(b) {
  const sel = $("#floor-hall");
  if (sel.options.length === b.halls.length) return;
  sel.innerHTML = b.halls.map((h) => `<option value="${esc(h.id)}">${esc(h.id)} — ${esc(h.name)}</option>`).join("");
}

async function giveFloor(hall) {
  if (await confirmDialog(t("confirm_floor", hall))) {
    await act("/api/v1/floor", { hall, expect: floorHolder });
    loadSessionsAndFloor();
  }
}

$("#floor-give").addEventListener("click", () => giveFloor($("#floor-hall").value));
$("#floor-queue").addEventListener("click", (ev) => {
  const btn = ev.target.closest("[data-floor-to]");
  if (btn) giveFloor(btn.dataset.floorTo);
});
$("#floor-raise").addEventListener("click", async () => {
  await act("/api/v1/floor/queue", { hall: $("#floor-hall").value });
  loadSessionsAndFloor();
});
$("#floor-take").addEventListener("click", async () => {
  if (!floorHolder || !(await confirmDialog(t("confirm_take", floorHolder)))) return;
  const resp = await fetch("/api/v1/floor", { method: "DELETE", headers: CSRF });
  if (resp.ok) toast(t("done"), true); else toast(`${t("refused")} (${resp.status})`, false);
  loadSessionsAndFloor();
});
$("#sessions").addEventListener("click", async (ev) => {
  const btn = ev.target.closest("[data-session-act]");
  if (!btn) return;
  const what = btn.dataset.sessionAct;
  if (await confirmDialog(t(what === "start" ? "confirm_start" : "confirm_end", btn.dataset.id))) {
    await act(`/api/v1/sessions/${encodeURIComponent(btn.dataset.id)}/${what}`, {});
    loadSessionsAndFloor();
  }
});

// -- actions --------------------------------------------------------------------------------

function canOperate() { return me && (me.role === "operator" || me.role === "admin"); }

function confirmDialog(text) {
  return new Promise((resolve) => {
    const dlg = $("#confirm");
    $("#confirm-text").textContent = text;
    dlg.returnValue = "";
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.showModal();
  });
}

async function act(url, body) {
  const resp = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json", ...CSRF }, body: JSON.stringify(body),
  });
  let detail = "";
  try { detail = (await resp.json()).error || ""; } catch { /* no body */ }
  if (resp.ok) toast(t("done"), true);
  else toast(`${t("refused")} (${resp.status}): ${detail}`, false);
  return resp.ok;
}

function fillHall(id) {
  const h = board && board.halls.find((x) => x.id === id);
  if (!h) return;
  $("#hall-title").textContent = `${h.id} — ${h.name}`;
  const facts = [
    [t("state"), t(h.state)], [t("relay"), h.relay || h.assigned_relay || "–"], [t("standby"), h.backup || "–"],
    [t("bitrate"), num(h.bitrate_kbps)], [t("fps"), num(h.fps)], [t("loss"), num(h.loss_pct, 2)],
    [t("latency"), num(h.latency_ms_p50)], [t("region"), t(h.region)],
    [t("layer"), h.layer ? `${h.layer === "audio" ? t("audio_only") : h.layer}${h.layer_reason ? ` (${t("layer_reason")}: ${h.layer_reason})` : ""}` : "–"],
    ...(h.qoe_frames_decoded ? [[t("av_drift"), num(h.av_drift_ms)]] : []),
  ];
  $("#hall-facts").innerHTML = facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("");
  const sel = $("#move-target");
  const keep = sel.value;
  const current = h.assigned_relay || h.relay;
  sel.innerHTML = board.relays.filter((r) => r.alive && !r.drained && r.id !== current)
    .map((r) => `<option value="${esc(r.id)}">${esc(r.id)} (${esc(r.role)}, ${num(r.halls)})</option>`).join("");
  if (keep) sel.value = keep;
  $("#move-go").disabled = !canOperate() || !sel.options.length;
  const hb = $("#hitless-go");
  hb.textContent = t(h.hitless ? "hitless_off" : "hitless_on");
  hb.dataset.on = h.hitless ? "false" : "true";
  hb.disabled = !canOperate() || h.state === "dark";
  // the ladder's layers, as the relays offer them; the operator's bounds for this hall
  const ladder = board.relays.reduce((best, r) => ((r.ladder || []).length > best.length ? r.ladder : best), []);
  const policy = h.layer_policy || {};
  for (const [sel, key] of [[$("#layer-ceiling"), "ceiling"], [$("#layer-floor"), "floor"]]) {
    const options = `<option value="">${esc(t("layer_any"))}</option>` +
      ladder.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join("");
    if (sel.dataset.options !== options) {  // the board refreshes every second: rebuild only on change
      const keep = sel.value;
      sel.innerHTML = options;
      sel.dataset.options = options;
      sel.value = keep;
    }
    if (!layerEdited) sel.value = policy[key] || "";  // never undo what the operator is choosing
  }
  if (!layerEdited) $("#layer-audio").checked = !!policy.audio_only;
  $("#layer-go").disabled = !canOperate() || !ladder.length;
  $("#layer-go").title = ladder.length ? "" : t("no_ladder");
}

for (const id of ["#layer-ceiling", "#layer-floor", "#layer-audio"]) {
  $(id).addEventListener("change", () => { layerEdited = true; });
}

function openHallDialog(id) {
  openHall = id;
  layerEdited = false;
  $("#move-target").value = "";
  fillHall(id);
  $("#hall-dialog").showModal();
}

$("#hall-dialog").addEventListener("close", () => { openHall = null; });
$("#regions").addEventListener("click", (ev) => {
  const row = ev.target.closest("tr[data-hall]");
  if (row) openHallDialog(row.dataset.hall);
});
$("#map").addEventListener("click", (ev) => {
  const dot = ev.target.closest("[data-map-hall]");
  if (dot) openHallDialog(dot.dataset.mapHall);
});
$("#move-go").addEventListener("click", async () => {
  const h = board.halls.find((x) => x.id === openHall);
  const target = $("#move-target").value;
  const from = h.assigned_relay || h.relay || "";
  if (!target || !(await confirmDialog(t("confirm_move", h.id, from || "–", target)))) return;
  if (await act(`/api/v1/halls/${encodeURIComponent(h.id)}/move`, { relay: target, expect: from })) {
    $("#hall-dialog").close();
  }
});
$("#hitless-go").addEventListener("click", async () => {
  const id = openHall;
  const on = $("#hitless-go").dataset.on === "true";
  if (!(await confirmDialog(t(on ? "confirm_hitless_on" : "confirm_hitless_off", id)))) return;
  await act(`/api/v1/halls/${encodeURIComponent(id)}/hitless`, { on });
});
$("#layer-go").addEventListener("click", async () => {
  const id = openHall;
  const body = { ceiling: $("#layer-ceiling").value, floor: $("#layer-floor").value, audio_only: $("#layer-audio").checked };
  const what = body.audio_only ? t("audio_only")
    : `${t("layer_ceiling")} ${body.ceiling || t("layer_any")}, ${t("layer_floor")} ${body.floor || t("layer_any")}`;
  if (!(await confirmDialog(t("confirm_layer", id, what)))) return;
  if (await act(`/api/v1/halls/${encodeURIComponent(id)}/layer`, body)) layerEdited = false;
});
$("#relays").addEventListener("click", async (ev) => {
  const btn = ev.target.closest("button[data-drain]");
  if (!btn) return;
  const on = btn.dataset.on === "true";
  const id = btn.dataset.drain;
  if (await confirmDialog(t(on ? "confirm_drain" : "confirm_undrain", id))) {
    await act(`/api/v1/relays/${encodeURIComponent(id)}/drain`, { drain: on });
  }
});
document.querySelectorAll("[data-source]").forEach((btn) => btn.addEventListener("click", async () => {
  const role = btn.dataset.source;
  const expect = board && board.source ? board.source.on_air : "";
  if (await confirmDialog(t("confirm_source", t(role)))) {
    await act("/api/v1/source", { role, expect: expect === "mixed" ? "" : expect });
  }
}));

// -- programme preview: WHEP through the orchestrator ------------------------------------------

const preview = { pc: null, location: null, watchdog: null, restarts: 0, wanted: false, why: "" };

// Reconnect (with a growing pause, at most 10 s) while the operator still wants the preview.
function retryPreview(why) {
  preview.why = why;
  console.warn(`preview: ${why}; reconnecting`);
  stopPreview();
  if (!preview.wanted) return;
  preview.restarts += 1;
  const pause = Math.min(1000 * preview.restarts, 10000);
  setTimeout(() => { if (preview.wanted && !preview.pc) startPreview(); }, pause);
}

// The preview must never show a frozen picture without saying so: when no new frame has been
// decoded for a while (a relay died, the path broke, the connection never came up), say so and
// reconnect through another answer. The watch starts with the peer connection, so a set-up that
// stalls half-way is caught like a stream that stops.
function watchPreview(pc) {
  let last = -1;
  let stalledSince = performance.now();
  preview.watchdog = setInterval(async () => {
    if (preview.pc !== pc) return;
    let decoded = 0;
    (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") decoded = s.framesDecoded || 0; });
    const now = performance.now();
    if (decoded !== last) {
      last = decoded; stalledSince = now; $("#preview-relay").classList.remove("stalled");
      if (decoded > 0) preview.restarts = 0;
      return;
    }
    if (now - stalledSince > 2000) $("#preview-relay").classList.add("stalled");
    // a loaded relay may take a while to answer and to send its first keyframe: allow the first
    // frame longer than a gap in a running picture
    if (now - stalledSince > (last > 0 ? 6000 : 12000)) {
      retryPreview(`no frame for ${((now - stalledSince) / 1000).toFixed(1)} s (${pc.connectionState}/${pc.iceConnectionState})`);
    }
  }, 1000);
}

async function startPreview() {
  const pc = new RTCPeerConnection({ iceServers: [] });
  preview.pc = pc;
  window.dcPreview = pc;  // the page's WebRTC stats are where a test (or an operator) checks decoding
  $("#preview-toggle").textContent = t("preview_stop");
  watchPreview(pc);
  try {
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    pc.ontrack = (ev) => { media.addTrack(ev.track); $("#preview").srcObject = media; };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const timer = setTimeout(resolve, 2000);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
    if (preview.pc !== pc) return;  // stopped meanwhile
    const resp = await fetch("/api/v1/preview", {
      method: "POST", headers: { "Content-Type": "application/sdp", ...CSRF }, body: pc.localDescription.sdp,
    });
    if (preview.pc !== pc) {  // stopped while the answer was on its way: end it at the relay too
      if (resp.status === 201) fetch(resp.headers.get("Location"), { method: "DELETE", headers: CSRF });
      return;
    }
    if (resp.status !== 201) {
      let reason = "";
      try { reason = (await resp.json()).error; } catch { /* not JSON */ }
      toast(`${t("preview")}: ${resp.status} ${reason}`, false);
      // 503 (the stream not yet at the relay, too many previews) and 502 (a relay that did not
      // answer in time) pass; anything else (401, 403, 415) would only repeat
      if ((resp.status === 503 || resp.status === 502) && preview.restarts < 20) retryPreview(`${resp.status} ${reason}`);
      else { preview.why = `${resp.status} ${reason}`; preview.wanted = false; stopPreview(); }
      return;
    }
    preview.location = resp.headers.get("Location");
    $("#preview-relay").textContent = resp.headers.get("X-Diemcau-Relay") || "";
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
  } catch (err) {
    if (preview.pc === pc) retryPreview(`set-up failed: ${err}`);
  }
}

function stopPreview() {
  clearInterval(preview.watchdog);
  preview.watchdog = null;
  if (preview.location) fetch(preview.location, { method: "DELETE", headers: CSRF });
  if (preview.pc) preview.pc.close();
  preview.pc = null;
  preview.location = null;
  window.dcPreview = null;
  $("#preview").srcObject = null;
  $("#preview-relay").textContent = "";
  $("#preview-toggle").textContent = t("preview_start");
}

$("#preview-toggle").addEventListener("click", () => {
  preview.wanted = !preview.pc;
  if (preview.pc) stopPreview(); else startPreview();
});
window.addEventListener("pagehide", () => { preview.wanted = false; stopPreview(); });

// -- the event and audit log ---------------------------------------------------------------------

let lastEventId = "";

function logQuery() {
  const f = new FormData($("#log-filter"));
  const q = new URLSearchParams();
  for (const k of ["kind", "subject", "actor"]) if (f.get(k)) q.set(k, f.get(k).trim());
  return q;
}

async function loadEvents(onlyNew = false) {
  const q = logQuery();
  q.set("count", "500");
  if (onlyNew && lastEventId) q.set("after", lastEventId);
  const resp = await fetch("/api/v1/events?" + q);
  if (!resp.ok) return;
  const evs = (await resp.json()).events;
  const rows = evs.map((e) => `<tr data-event="${esc(e.id)}" data-kind="${esc(e.kind)}">
    <td>${esc(new Date(Number(e.ts)).toLocaleString(lang === "vi" ? "vi-VN" : "en-GB"))}</td>
    <td>${esc(e.kind)}</td><td>${esc(e.subject)}</td><td>${esc(e.actor)}</td><td>${esc(e.detail)}</td></tr>`).join("");
  const body = $("#events tbody");
  if (onlyNew && lastEventId) body.insertAdjacentHTML("afterbegin", rows);
  else body.innerHTML = rows;
  if (evs.length) lastEventId = evs[0].id;
  const csv = new URLSearchParams(logQuery());
  csv.set("format", "csv");
  csv.set("count", "5000");
  $("#csv").href = "/api/v1/events?" + csv;
}

$("#log-filter").addEventListener("submit", (ev) => { ev.preventDefault(); lastEventId = ""; loadEvents(); });

function showTab(name) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  $("#board").hidden = name !== "board";
  $("#log").hidden = name !== "log";
  if (name === "log") { lastEventId = ""; loadEvents(); }
}
$("#tabs").addEventListener("click", (ev) => { if (ev.target.dataset.tab) showTab(ev.target.dataset.tab); });

// -- session -------------------------------------------------------------------------------------

function connect() {
  if (stream) stream.close();
  stream = new EventSource("/api/v1/board/stream");
  stream.addEventListener("board", (ev) => { board = JSON.parse(ev.data); render(board); noteStates(board); });
  stream.onerror = async () => {
    const r = await fetch("/api/v1/me");
    if (r.status === 401) { stream.close(); showLogin(); }
  };
}

// when each hall's current state first reached this page, beside the server's time for the snapshot that
// carried it: how late the board is, told apart from how late the server was (read by tests and operators)
window.dcShown = {};
function noteStates(b) {
  const now = Date.now();
  for (const h of b.halls) {
    const seen = window.dcShown[h.id];
    if (!seen || seen.state !== h.state) window.dcShown[h.id] = { state: h.state, at: b.at, shown: now };
  }
}

function showBoard(user, role) {
  me = { user, role };
  $("#login").hidden = true;
  $("#tabs").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = `${user} (${role})`;
  document.body.classList.toggle("viewer", !canOperate());
  showTab("board");
  connect();
}

function showLogin() {
  me = null;
  preview.wanted = false;
  stopPreview();
  $("#login").hidden = false;
  $("#board").hidden = true;
  $("#log").hidden = true;
  $("#tabs").hidden = true;
  $("#logout").hidden = true;
  $("#who").textContent = "";
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const resp = await fetch("/api/v1/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
  if (!resp.ok) { $("#login-error").textContent = t("bad_login"); return; }
  $("#login-error").textContent = "";
  const body = await resp.json();
  showBoard(body.user, body.role);
});

$("#logout").addEventListener("click", async () => {
  await fetch("/api/v1/logout", { method: "POST", headers: CSRF });
  if (stream) stream.close();
  showLogin();
});

$("#lang").addEventListener("click", () => { lang = lang === "vi" ? "en" : "vi"; localStorage.setItem("dc_lang", lang); applyLang(); });

applyLang();
fetch("/api/v1/me").then(async (r) => { if (r.ok) { const who = await r.json(); showBoard(who.user, who.role); } });
