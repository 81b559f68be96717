// An inline formula wider than its line (a phone's 390 px) scrolls in its own box instead of widening the page.
window.addEventListener("load", () => {
  if (!window.MathJax || !window.MathJax.startup) return;
  window.MathJax.startup.promise.then(() => {
    for (const formula of document.querySelectorAll('mjx-container:not([display="true"])')) {
      if (formula.getBoundingClientRect().width > formula.parentElement.clientWidth) {
        formula.classList.add("book-wide-math");
      }
    }
  });
});
