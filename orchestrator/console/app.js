// diemcau operator console: login, then a live board fed by server-sent events (no polling).
const I18N = {
  vi: { login_title: "Đăng nhập điều hành", username: "Tên đăng nhập", password: "Mật khẩu", login: "Đăng nhập",
        logout: "Đăng xuất", relays: "Máy chủ chuyển tiếp", relay: "Relay", role: "Vai trò", region: "Miền",
        health: "Tình trạng", halls: "Điểm cầu", subscribers: "Thuê bao", upstream: "Nguồn trên",
        north: "Miền Bắc", central: "Miền Trung", south: "Miền Nam", hall: "Điểm cầu", state: "Trạng thái",
        layer: "Lớp", bitrate: "kbps", loss: "Mất gói %", rtt: "RTT", fps: "fps", freezes: "Đứng hình/phút",
        latency: "Trễ ms", last_seen: "Lần cuối", on_air: "Đang phát", degraded: "Suy giảm", dark: "Mất tín hiệu",
        connecting: "Đang kết nối", audio_only: "Chỉ âm thanh", on_backup: "Đường dự phòng", alive: "hoạt động", dead: "chết",
        bad_login: "Sai tên đăng nhập hoặc mật khẩu", summary: "điểm cầu đang phát", standby: "Dự phòng" },
  en: { login_title: "Operator login", username: "Username", password: "Password", login: "Log in",
        logout: "Log out", relays: "Relays", relay: "Relay", role: "Role", region: "Region",
        health: "Health", halls: "Halls", subscribers: "Subscribers", upstream: "Upstream",
        north: "North", central: "Central", south: "South", hall: "Hall", state: "State",
        layer: "Layer", bitrate: "kbps", loss: "Loss %", rtt: "RTT", fps: "fps", freezes: "Freezes/min",
        latency: "Latency ms", last_seen: "Last seen", on_air: "On air", degraded: "Degraded", dark: "Dark",
        connecting: "Connecting", audio_only: "Audio only", on_backup: "On backup", alive: "alive", dead: "dead",
        bad_login: "Wrong username or password", summary: "halls on air", standby: "Standby" },
};
let lang = localStorage.getItem("dc_lang") || "vi";
let board = null;
let source = null;
const t = (k) => (I18N[lang] && I18N[lang][k]) || k;
const $ = (s) => document.querySelector(s);

function applyLang() {
  document.documentElement.lang = lang;
  $("#lang").textContent = lang === "vi" ? "EN" : "VI";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  if (board) render(board);
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function num(v, digits = 0) { return v === undefined || v === null || v < 0 ? "–" : Number(v).toFixed(digits); }

function render(b) {
  const regions = ["north", "central", "south"];
  const html = regions.map((r) => {
    const rows = b.halls.filter((h) => h.region === r).map((h) => {
      const live = h.state !== "dark";  // a dark hall's last figures are history, not state
      const v = (x, d) => (live ? num(x, d) : "–");
      return `
      <tr data-hall="${esc(h.id)}" data-state="${esc(h.state)}">
        <td>${esc(h.id)}</td><td class="name">${esc(h.name)}</td>
        <td><span class="state s-${esc(h.state)}">${esc(t(h.state))}</span></td>
        <td>${esc(h.relay || h.assigned_relay || "–")}</td>
        <td>${esc(live && h.backup ? h.backup + (h.backup_state === "standby" ? "" : " …") : "–")}</td>
        <td>${v(h.bitrate_kbps)}</td><td>${v(h.loss_pct, 2)}</td><td>${v(h.fps)}</td>
        <td>${v(h.freezes)}</td><td>${v(h.latency_ms_p50)}</td>
        <td>${h.last_seen_ms == null ? "–" : (h.last_seen_ms / 1000).toFixed(1) + " s"}</td>
      </tr>`;
    }).join("");
    return `<div class="region" data-region="${r}"><h2>${esc(t(r))}</h2><table><thead><tr>
      <th>ID</th><th>${t("hall")}</th><th>${t("state")}</th><th>${t("relay")}</th><th>${t("standby")}</th><th>${t("bitrate")}</th>
      <th>${t("loss")}</th><th>${t("fps")}</th><th>${t("freezes")}</th><th>${t("latency")}</th><th>${t("last_seen")}</th>
      </tr></thead><tbody>${rows}</tbody></table></div>`;
  }).join("");
  $("#regions").innerHTML = html;
  $("#relays tbody").innerHTML = b.relays.map((r) => `
    <tr data-relay="${esc(r.id)}"><td>${esc(r.id)}</td><td>${esc(r.role)}</td><td>${esc(t(r.region))}</td>
    <td>${r.alive ? t("alive") : t("dead")}</td><td>${num(r.halls)}</td><td>${num(r.subscribers)}</td>
    <td>${esc(r.upstream || "–")}</td></tr>`).join("");
  const onAir = b.counts.on_air || 0;
  $("#summary").textContent = `${onAir}/${b.halls.length} ${t("summary")}`;
}

function connect() {
  if (source) source.close();
  source = new EventSource("/api/v1/board/stream");
  source.addEventListener("board", (ev) => { board = JSON.parse(ev.data); render(board); });
  source.onerror = async () => {
    const me = await fetch("/api/v1/me");
    if (me.status === 401) { source.close(); showLogin(); }
  };
}

function showBoard(user, role) {
  $("#login").hidden = true;
  $("#board").hidden = false;
  $("#logout").hidden = false;
  $("#who").textContent = `${user} (${role})`;
  connect();
}

function showLogin() {
  $("#login").hidden = false;
  $("#board").hidden = true;
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
  await fetch("/api/v1/logout", { method: "POST", headers: { "X-Diemcau-Request": "1" } });
  if (source) source.close();
  showLogin();
});

$("#lang").addEventListener("click", () => { lang = lang === "vi" ? "en" : "vi"; localStorage.setItem("dc_lang", lang); applyLang(); });

applyLang();
fetch("/api/v1/me").then(async (r) => { if (r.ok) { const me = await r.json(); showBoard(me.user, me.role); } });
