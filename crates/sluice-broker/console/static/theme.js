// Applies the theme chosen with the toggle before the page paints (loaded in <head>).
(function () {
  try {
    var t = localStorage.getItem("sluice-theme");
    if (t === "dark" || t === "light") document.documentElement.dataset.theme = t;
  } catch (e) { /* storage off: follow the system */ }
})();
