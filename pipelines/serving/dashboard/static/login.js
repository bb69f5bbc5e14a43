// The page a login came from may be a view inside the dashboard (#/vehicles/…): the server never sees that part.
document.addEventListener("DOMContentLoaded", () => {
  const next = document.getElementById("next");
  if (next && location.hash && next.value === "/") next.value = "/" + location.hash;
});
