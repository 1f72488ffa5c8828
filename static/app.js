// The pages' small script: relative times that stay current, running durations that count
// up, live refresh that pauses, a filter form kept in line with the results, a task page
// whose status follows the task, and a question before a Cancel button posts.
// Everything here is an enhancement: without it the page is a plain form and plain links.
(function () {
  "use strict";

  var PAUSE_KEY = "vectorize-tasks.live-paused";
  // The part of a task's page that refreshes itself while the task is active.
  var LIVE_PART_ID = "task-live";
  // The id of the region htmx swaps, as the page names it on this script's tag.
  var RESULTS_ID = document.currentScript.getAttribute("data-results-id");
  // Server clock minus browser clock. The server renders times to the minute, so a
  // difference under 90 s is that rounding, not a clock that is off.
  var clockOffset = 0;

  function readServerClock() {
    var holder = document.querySelector("[data-server-now]");
    if (!holder) return;
    var offset = Date.parse(holder.getAttribute("data-server-now")) - Date.now();
    clockOffset = Math.abs(offset) > 90000 ? offset : 0;
  }

  function now() {
    return Date.now() + clockOffset;
  }

  // The same words as the server's time_ago and duration_text.
  function timeAgo(ms) {
    var seconds = ms / 1000;
    if (seconds < 60) return "just now";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min ago";
    var hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h ago";
    return Math.floor(hours / 24) + " d ago";
  }

  function durationText(ms) {
    var whole = Math.max(0, Math.floor(ms / 1000));
    if (whole < 60) return whole + " s";
    var minutes = Math.floor(whole / 60);
    if (minutes < 60) return minutes + " min " + (whole % 60) + " s";
    var hours = Math.floor(minutes / 60);
    if (hours < 24) return hours + " h " + (minutes % 60) + " min";
    return Math.floor(hours / 24) + " d " + (hours % 24) + " h";
  }

  function refreshTimes() {
    var at = now();
    document.querySelectorAll("time[data-relative]").forEach(function (el) {
      var text = timeAgo(at - Date.parse(el.getAttribute("datetime")));
      if (el.textContent !== text) el.textContent = text;
    });
    document.querySelectorAll("[data-running-since]").forEach(function (el) {
      var text = durationText(at - Date.parse(el.getAttribute("data-running-since")));
      if (el.textContent !== text) el.textContent = text;
    });
  }

  // -- live refresh --------------------------------------------------------------------------

  function paused() {
    try {
      return sessionStorage.getItem(PAUSE_KEY) === "1";
    } catch (e) {
      return false;
    }
  }

  function setPaused(value) {
    try {
      if (value) sessionStorage.setItem(PAUSE_KEY, "1");
      else sessionStorage.removeItem(PAUSE_KEY);
    } catch (e) {
      /* storage refused: the button still works for this page */
    }
  }

  // Each tick of the results region's poller asks first: no refresh while the tab is hidden
  // or the reader paused the updates. (Here rather than in an hx-trigger filter, which htmx
  // would have to evaluate as code, and the Content-Security-Policy forbids that.)
  document.addEventListener("htmx:confirm", function (event) {
    var source = event.detail.elt;
    if (source && source.id === "live-refresh" && (document.hidden || paused())) {
      event.preventDefault();
    }
    if (source && source.id === LIVE_PART_ID && document.hidden) {
      event.preventDefault();
    }
  });

  function showLiveState() {
    var button = document.getElementById("live-toggle");
    var status = document.getElementById("live-status");
    if (!button) return;
    var isPaused = paused();
    button.hidden = false;
    button.setAttribute("aria-pressed", isPaused ? "true" : "false");
    button.textContent = isPaused ? "Resume updates" : "Pause updates";
    if (status) {
      status.textContent = isPaused ? "Live updates paused" : status.getAttribute("data-live-text");
    }
    var live = document.getElementById("live");
    if (live) live.classList.toggle("is-paused", isPaused);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("#live-toggle");
    if (!button) return;
    setPaused(!paused());
    showLiveState();
  });

  // A ctrl/cmd/shift or middle click on an htmx link opens it in a new tab, as on any link.
  document.addEventListener(
    "click",
    function (event) {
      var link = event.target.closest && event.target.closest("a[hx-get]");
      if (link && (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0)) {
        event.stopImmediatePropagation();
      }
    },
    true
  );

  // -- the filter form -----------------------------------------------------------------------

  function setChecked(form, name, values) {
    form.querySelectorAll('input[type="checkbox"][name="' + name + '"]').forEach(function (box) {
      box.checked = values.indexOf(box.value) >= 0;
    });
  }

  function setValue(control, value) {
    if (control && control !== document.activeElement && control.value !== value) {
      control.value = value;
    }
  }

  function setSelect(select, value) {
    if (!select || select === document.activeElement) return;
    var found = Array.prototype.some.call(select.options, function (option) {
      return option.value === value && !option.hasAttribute("data-custom");
    });
    if (!found) {
      var option = document.createElement("option");
      option.value = option.textContent = value;
      select.appendChild(option);
    }
    select.value = value;
  }

  function setWindow(form, hours) {
    var select = form.querySelector("#window");
    var custom = form.querySelector("#within_hours");
    if (!select || !custom) return;
    if (select === document.activeElement || custom === document.activeElement) return;
    var preset = Array.prototype.filter.call(select.options, function (option) {
      return option.value === hours && !option.hasAttribute("data-custom");
    })[0];
    if (preset) {
      preset.selected = true;
      custom.value = "";
    } else {
      select.querySelector("option[data-custom]").selected = true;
      custom.value = hours;
    }
  }

  function setTags(form, tags) {
    var input = form.querySelector("#tag");
    if (!input) return;
    setValue(input, tags[0] || "");
    form.querySelectorAll("input[data-extra-tag]").forEach(function (extra) {
      extra.remove();
    });
    tags.slice(1).forEach(function (tag) {
      var extra = document.createElement("input");
      extra.type = "hidden";
      extra.name = "tag";
      extra.value = tag;
      extra.setAttribute("data-extra-tag", "");
      input.after(extra);
    });
  }

  function setErrors(form, errors) {
    form.querySelectorAll("[data-errors-for]").forEach(function (box) {
      var name = box.getAttribute("data-errors-for");
      var messages = errors[name] || [];
      box.replaceChildren.apply(
        box,
        messages.map(function (message) {
          var line = document.createElement("p");
          line.className = "field-error";
          line.textContent = "⚠ " + message;
          return line;
        })
      );
      form.querySelectorAll('[name="' + name + '"]').forEach(function (control) {
        if (messages.length) control.setAttribute("aria-invalid", "true");
        else control.removeAttribute("aria-invalid");
      });
    });
  }

  // After a chip, a tag or a pager link changed the filter, show that filter in the form.
  function syncForm() {
    var form = document.getElementById("filters");
    var holder = document.querySelector("#" + RESULTS_ID + " [data-filter]");
    if (!form || !holder) return;
    var state = JSON.parse(holder.getAttribute("data-filter"));
    setChecked(form, "task_type", state.task_type);
    setChecked(form, "status", state.status);
    setWindow(form, state.within_hours);
    setValue(form.querySelector("#created_after"), state.created_after);
    setValue(form.querySelector("#created_before"), state.created_before);
    setTags(form, state.tag);
    setValue(form.querySelector("#q"), state.q);
    setSelect(form.querySelector("#limit"), state.limit || "20");
    setSelect(form.querySelector("#order"), state.order);
    setValue(form.querySelector("#actor"), state.actor);
    var stalled = form.querySelector("#stalled");
    if (stalled) stalled.checked = state.stalled === "true";
    var count = form.querySelector('input[name="count"]');
    if (count) count.disabled = state.count !== "exact";
    var group = form.querySelector("#error_group");
    if (group) {
      group.value = state.error_group;
      group.disabled = !state.error_group;
    }
    setErrors(form, state.errors);
  }

  // Choosing a preset window clears the custom hours; choosing "Custom…" waits for them.
  // Capturing runs this before htmx reads the form.
  document.addEventListener(
    "change",
    function (event) {
      if (event.target.id !== "window") return;
      var custom = document.getElementById("within_hours");
      var option = event.target.selectedOptions[0];
      if (option && option.hasAttribute("data-custom")) {
        event.stopPropagation();
        if (custom) custom.focus();
      } else if (custom) {
        custom.value = "";
      }
    },
    true
  );

  document.addEventListener("input", function (event) {
    if (event.target.id !== "within_hours") return;
    var custom = document.querySelector("#window option[data-custom]");
    if (custom) custom.selected = true;
  });

  // -- swaps of the results region -----------------------------------------------------------

  var kept = { open: [], scrollLeft: 0, insights: null };
  var INSIGHTS_ID = "insights";

  function isResults(event) {
    return event.detail.target && event.detail.target.id === RESULTS_ID;
  }

  // A refresh asks "has it changed?"; an unchanged answer (304) keeps what is shown.
  document.addEventListener("htmx:configRequest", function (event) {
    var source = event.detail.elt;
    var results = document.getElementById(RESULTS_ID);
    if (source && source.id === "live-refresh" && results && results.dataset.etag) {
      event.detail.headers["If-None-Match"] = results.dataset.etag;
    }
    var holder = liveEtagHolder();
    if (source && source.id === LIVE_PART_ID && holder && holder.dataset.liveEtag) {
      event.detail.headers["If-None-Match"] = holder.dataset.liveEtag;
    }
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!isResults(event)) return;
    var xhr = event.detail.xhr;
    var results = event.detail.target;
    var etag = xhr.getResponseHeader("ETag");
    // A refresh whose poller was swapped away while it ran (the user changed the filter or
    // the page meanwhile) answers for a view no longer shown: it must not overwrite the new one.
    var source = event.detail.requestConfig && event.detail.requestConfig.elt;
    var stale = source && source.id === "live-refresh" && !source.isConnected;
    if (stale || xhr.status === 304 || (etag && etag === results.dataset.etag)) {
      event.detail.shouldSwap = false;
      return;
    }
    // Keep what the reader had open and where the table was scrolled to.
    kept.open = Array.prototype.map.call(results.querySelectorAll("details[open][id]"), function (el) {
      return el.id;
    });
    var wrap = results.querySelector(".table-wrap");
    kept.scrollLeft = wrap ? wrap.scrollLeft : 0;
    // The chart drawn before, if it had loaded: shown in the new region's placeholder until
    // the new chart replaces it, so a live refresh does not blank it every few seconds.
    var insights = document.getElementById(INSIGHTS_ID);
    kept.insights = insights && !insights.hasAttribute("hx-get") ? insights : null;
  });

  function restoreOpen() {
    kept.open.forEach(function (id) {
      var details = document.getElementById(id);
      if (details) details.open = true;
    });
  }

  function keepChartWhileLoading() {
    var placeholder = document.getElementById(INSIGHTS_ID);
    if (kept.insights && placeholder && placeholder.hasAttribute("hx-get")) {
      placeholder.replaceChildren.apply(placeholder, Array.prototype.slice.call(kept.insights.childNodes));
    }
    kept.insights = null;
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    // The chart and top errors arrived after the region: open what the reader had open.
    if (event.detail.target && event.detail.target.id === INSIGHTS_ID) {
      restoreOpen();
      refreshTimes();
      return;
    }
    if (!isResults(event)) return;
    var results = event.detail.target;
    results.dataset.etag = event.detail.xhr.getResponseHeader("ETag") || "";
    restoreOpen();
    keepChartWhileLoading();
    var wrap = results.querySelector(".table-wrap");
    if (wrap) wrap.scrollLeft = kept.scrollLeft;
    afterContent();
  });

  // -- the task page: the part that changes as the task lives ----------------------------------

  // While the task is active, that part asks for itself every few seconds and replaces
  // itself; the page keeps the ETag of what it shows, so an unchanged part stays as it is
  // (the reader's focus on a button with it), and says a new status to screen readers.

  // What a screen reader reads of an element: its text without the icons hidden from it.
  function spokenText(el) {
    var copy = el.cloneNode(true);
    copy.querySelectorAll('[aria-hidden="true"]').forEach(function (icon) {
      icon.remove();
    });
    return copy.textContent.replace(/\s+/g, " ").trim();
  }

  function liveEtagHolder() {
    return document.querySelector("[data-live-etag]");
  }

  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!event.detail.target || event.detail.target.id !== LIVE_PART_ID) return;
    var xhr = event.detail.xhr;
    var holder = liveEtagHolder();
    var etag = xhr.getResponseHeader("ETag");
    if (xhr.status === 304 || (etag && holder && etag === holder.dataset.liveEtag)) {
      event.detail.shouldSwap = false;
      return;
    }
    if (holder) holder.dataset.liveEtag = etag || "";
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var part = event.target;
    if (!part || part.id !== LIVE_PART_ID) return;
    var said = document.getElementById("task-live-said");
    var statuses = Array.prototype.map.call(part.querySelectorAll(".task-headline .status"), spokenText);
    var text = "Status: " + statuses.join(", ");
    if (said && said.textContent !== text) said.textContent = text;
    refreshTimes();
  });

  // -- the operator's buttons ----------------------------------------------------------------

  // A form that asks first (Cancel) shows the browser's own question before it posts;
  // without this script it posts at once.
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute && event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // After a history restore the whole page is new.
  document.addEventListener("htmx:historyRestore", afterContent);

  function afterContent() {
    readServerClock();
    refreshTimes();
    showLiveState();
    syncForm();
  }

  document.addEventListener("DOMContentLoaded", function () {
    readServerClock();
    refreshTimes();
    showLiveState();
    setInterval(refreshTimes, 1000);
  });
})();
