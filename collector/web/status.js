// The status page refreshes itself without a reload: every
// data-refresh-seconds it fetches status.json and replaces the summary and
// the tables' rows with what it says, building the same elements as the
// server's template (status.html). Every text goes in through text nodes
// and every link through setAttribute, so nothing of the JSON is ever
// parsed as HTML. Without JavaScript the page is complete as served, and a
// <noscript> meta refresh reloads it.
(function () {
  "use strict";

  var every = parseInt(document.body.getAttribute("data-refresh-seconds"), 10) || 10;
  var updated = document.getElementById("updated");

  // el builds an element: attrs is an object of attributes, kids are
  // elements or strings (text).
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined) {
        e.setAttribute(k, attrs[k]);
      }
    });
    (kids || []).forEach(function (k) {
      if (k === null || k === undefined) {
        return;
      }
      e.appendChild(typeof k === "string" ? document.createTextNode(k) : k);
    });
    return e;
  }

  function replaceRows(tbody, rows) {
    while (tbody.firstChild) {
      tbody.removeChild(tbody.firstChild);
    }
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  function targetRow(t) {
    var reason = el("td", { "class": "reason" }, [t.reason]);
    if (t.error) {
      reason.appendChild(el("div", { "class": "error" }, [t.error]));
    }
    if (t.note) {
      reason.appendChild(el("div", { "class": "small" }, [t.note]));
    }
    var links = el("td", { "class": "links" }, [el("a", { "class": "logs", href: t.logs_url }, [t.logs_label])]);
    if (t.debug_url) {
      links.appendChild(el("a", { "class": "debug", href: t.debug_url }, [t.debug_label]));
    } else if (t.debug_note) {
      links.appendChild(el("span", { "class": "small" }, [t.debug_note]));
    }
    return el("tr", { "data-target": t.name, "data-result": t.result }, [
      el("td", {}, [el("a", { href: t.logs_url }, [t.name])]),
      el("td", {}, [el("code", {}, [t.image])]),
      el("td", { "class": t.result }, [t.result_text]),
      reason,
      el("td", { "class": "num" }, [t.latency]),
      el("td", {}, [t.headroom]),
      el("td", {}, [t.last_success_ago]),
      el("td", {}, [el("code", { title: t.digest }, [t.digest_short])]),
      el("td", {}, [t.module]),
      el("td", { "class": "num" }, [t.interval]),
      el("td", {}, [t.source]),
      links
    ]);
  }

  function renderTargets(targets) {
    var rows = targets.map(targetRow);
    if (rows.length === 0) {
      rows = [el("tr", {}, [el("td", { colspan: "12" }, ["No targets. Add some under ",
        el("code", {}, ["targets:"]), " in the configuration file."])])];
    }
    replaceRows(document.querySelector("#targets tbody"), rows);
  }

  function renderRegistries(registries) {
    var section = document.getElementById("registries");
    section.hidden = registries.length === 0;
    replaceRows(section.querySelector("tbody"), registries.map(function (r) {
      return el("tr", { "data-registry": r.registry }, [
        el("td", {}, [el("code", {}, [r.registry])]),
        el("td", { "class": r.state }, [r.state]),
        el("td", {}, [r.reason])
      ]);
    }));
  }

  function renderKubernetes(k) {
    var body = document.getElementById("kubernetes-body");
    if (!body || !k) {
      return; // the join is off: the page has no section
    }
    var kids;
    if (!k.synced) {
      kids = [el("p", {}, ["Waiting for the first list of pods from the apiserver."])];
    } else if (k.blocked.length === 0) {
      kids = [el("p", {}, ["No container waits on an image pull."])];
    } else {
      var text = k.containers + " containers wait on an image pull.";
      if (k.folded_registries) {
        text += " " + k.folded_registries + " registries are counted under \"other\" (--kube.max-registries).";
      }
      kids = [
        el("p", {}, [text]),
        el("table", { id: "blocked" }, [
          el("thead", {}, [el("tr", {}, [el("th", {}, ["Registry"]), el("th", {}, ["Cause"]), el("th", {}, ["Containers"])])]),
          el("tbody", {}, k.blocked.map(function (b) {
            return el("tr", {}, [el("td", {}, [el("code", {}, [b.registry])]), el("td", {}, [b.cause]),
              el("td", { "class": "num" }, [String(b.containers)])]);
          }))
        ]),
        el("table", { id: "namespaces" }, [
          el("thead", {}, [el("tr", {}, [el("th", {}, ["Namespace"]), el("th", {}, ["Containers waiting"])])]),
          el("tbody", {}, k.namespaces.map(function (n) {
            return el("tr", {}, [el("td", {}, [n.namespace]), el("td", { "class": "num" }, [String(n.containers)])]);
          }))
        ])
      ];
      if (k.more_namespaces) {
        kids.push(el("p", { "class": "small" }, ["and " + k.more_namespaces + " more namespaces."]));
      }
    }
    replaceRows(body, kids);
  }

  function setText(id, text) {
    document.getElementById(id).textContent = text;
  }

  var renders = 0;

  function render(s) {
    var n = s.summary;
    setText("summary-targets", n.targets + " targets (" + n.configured + " configured, " + n.discovered + " discovered)");
    setText("summary-failed", n.failed + " failed");
    setText("summary-no_credentials", n.no_credentials + " without credentials");
    setText("summary-pending", n.pending + " pending");
    setText("summary-ok", n.ok + " ok");
    renderTargets(s.targets);
    renderRegistries(s.registries);
    renderKubernetes(s.kubernetes);
    updated.textContent = "As of ";
    updated.appendChild(el("time", { id: "generated" }, [s.generated]));
    updated.appendChild(document.createTextNode("; refreshes every " + every + "s."));
    renders++;
    document.body.setAttribute("data-renders", String(renders)); // for tests, and a look in devtools
  }

  function tick() {
    fetch("status.json", { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.json();
      })
      .then(render)
      .catch(function (err) {
        // Keep the last data; say it is getting old.
        updated.textContent = "Refreshing failed (" + err.message + "); the data above may be stale; retrying every " + every + "s.";
      })
      .then(function () { setTimeout(tick, every * 1000); });
  }

  setTimeout(tick, every * 1000);
})();
